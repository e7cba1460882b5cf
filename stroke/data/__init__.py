"""Data: sources that list images, the datamodule that splits and loads them."""

from stroke.data.datamodule import StrokeDataModule
from stroke.data.dicom import DicomSource
from stroke.data.nifti import NiftiSource
from stroke.data.samples import Sample
from stroke.data.sources import CsvSource, FolderSource, PresplitSource

__all__ = [
    "CsvSource",
    "DicomSource",
    "FolderSource",
    "NiftiSource",
    "PresplitSource",
    "Sample",
    "StrokeDataModule",
]
