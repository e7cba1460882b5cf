"""Data: sources that list images, the datamodule that splits and loads them."""

from stroke.data.cq500 import Cq500Source
from stroke.data.datamodule import StrokeDataModule
from stroke.data.dicom import DicomSource
from stroke.data.nifti import NiftiSource
from stroke.data.rsna import RSNA_LABELS, RsnaSource
from stroke.data.samples import Sample
from stroke.data.sources import CsvSource, FolderSource, PresplitSource

__all__ = [
    "RSNA_LABELS",
    "Cq500Source",
    "CsvSource",
    "DicomSource",
    "FolderSource",
    "NiftiSource",
    "PresplitSource",
    "RsnaSource",
    "Sample",
    "StrokeDataModule",
]
