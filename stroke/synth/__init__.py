"""Synthetic data: the head-CT phantom that serves as the embedded default dataset.

`generate_phantom` writes PNG slices in a folder per class (the default data);
`generate_series_phantom` writes DICOM series with haemorrhage subtypes in RSNA's layout;
`generate_volume_phantom` writes whole scans (NIfTI and DICOM) with lesion label volumes.
"""

from stroke.synth.phantom import PhantomConfig, generate_phantom
from stroke.synth.series import SeriesPhantomConfig, generate_series_phantom
from stroke.synth.volume_files import generate_volume_phantom
from stroke.synth.volumes import VolumePhantomConfig

__all__ = [
    "PhantomConfig",
    "SeriesPhantomConfig",
    "VolumePhantomConfig",
    "generate_phantom",
    "generate_series_phantom",
    "generate_volume_phantom",
]
