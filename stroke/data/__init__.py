"""Data: sources that list images, the datamodule that splits and loads them."""

from stroke.data.datamodule import StrokeDataModule
from stroke.data.samples import Sample
from stroke.data.sources import CsvSource, FolderSource, PresplitSource

__all__ = ["CsvSource", "FolderSource", "PresplitSource", "Sample", "StrokeDataModule"]
