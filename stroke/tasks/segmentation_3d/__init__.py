"""Lesion segmentation of whole scans in 3-D (MONAI networks, nnU-Net-style planning).

Parts: `datamodule` lists the scans (stroke.data.volume_source), splits them by patient,
plans spacing, patch and network (stroke.data.volume_plan) and caches the resampled
volumes; `transforms` the MONAI pipeline; `module` trains a MONAI network on patches and
scores whole volumes by sliding window; `inference` predicts scans in their own geometry
(fold ensembles averaged); `report` scores them lesion by lesion; `checkpoint`, `evaluate`
and `predict` serve stroke-eval and stroke-predict.
"""

from stroke.tasks.registry import TaskParts
from stroke.tasks.segmentation_3d.checkpoint import load_volume_segmenter
from stroke.tasks.segmentation_3d.datamodule import VolumeSegmentationDataModule
from stroke.tasks.segmentation_3d.evaluate import evaluate_volume_checkpoints
from stroke.tasks.segmentation_3d.module import VolumeSegmenter
from stroke.tasks.segmentation_3d.predict import run_volume_prediction
from stroke.tasks.segmentation_3d.serve import refuse_volume_segmenter
from stroke.tasks.segmentation_3d.transforms import VolumeAugmentation

TASK = TaskParts(
    name=VolumeSegmenter.task,
    summary="a label volume per scan (background and the lesion classes), in mL",
    module=VolumeSegmenter,
    load=load_volume_segmenter,
    evaluate=evaluate_volume_checkpoints,
    predict=run_volume_prediction,
    onnx_outputs=lambda model: ["masks"],
    serve=refuse_volume_segmenter,
    serve_key="seg_ckpt_path",
    ensembles=True,
)

__all__ = ["TASK", "VolumeAugmentation", "VolumeSegmentationDataModule", "VolumeSegmenter"]
