"""Synthetic data: the head-CT phantom that serves as the embedded default dataset.

`generate_phantom` writes PNG slices in a folder per class (the default data);
`generate_series_phantom` writes DICOM series with haemorrhage subtypes in RSNA's layout.
"""

from stroke.synth.phantom import PhantomConfig, generate_phantom
from stroke.synth.series import SeriesPhantomConfig, generate_series_phantom

__all__ = ["PhantomConfig", "SeriesPhantomConfig", "generate_phantom", "generate_series_phantom"]
