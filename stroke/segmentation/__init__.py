"""Lesion segmentation beside classification: where the bleed or infarct is, and how big.

The same framework as the classifiers (Hydra groups, patient-aware splits, the image
cache, sweeps, TensorBoard, stroke-eval/predict/export), with masks: `masks` reads and
checks them, `datamodule` loads image and mask together, `module` trains an smp network
(`networks`), `metrics` scores it, `report` and `predict` write what users read.
"""

from stroke.segmentation.datamodule import LesionSegmentationDataModule
from stroke.segmentation.masks import LesionMasks
from stroke.segmentation.module import StrokeSegmenter

__all__ = ["LesionMasks", "LesionSegmentationDataModule", "StrokeSegmenter"]
