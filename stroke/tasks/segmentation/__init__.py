"""Lesion segmentation beside classification: where the bleed or infarct is, and how big.

The same framework as the classifiers (Hydra groups, patient-aware splits, the image
cache, sweeps, TensorBoard, stroke-eval/predict/export/serve), with masks. Parts: `masks`
reads and checks them, `datamodule` loads image and mask together, `module` trains an smp
network (`networks`), `metrics` scores it, `checkpoint` rebuilds it, `evaluate` and
`report` write stroke-eval's report, `predict` stroke-predict's masks, `serve` what
stroke-serve draws.
"""

from stroke.tasks.registry import TaskParts
from stroke.tasks.segmentation.checkpoint import load_segmenter
from stroke.tasks.segmentation.datamodule import LesionSegmentationDataModule
from stroke.tasks.segmentation.evaluate import evaluate_segmentation_checkpoint
from stroke.tasks.segmentation.masks import LesionMasks
from stroke.tasks.segmentation.module import StrokeSegmenter
from stroke.tasks.segmentation.predict import run_segmentation_prediction
from stroke.tasks.segmentation.serve import load_served_segmenter

TASK = TaskParts(
    name=StrokeSegmenter.task,
    summary="a lesion mask per image (background and the lesion classes)",
    module=StrokeSegmenter,
    load=load_segmenter,
    evaluate=evaluate_segmentation_checkpoint,
    predict=run_segmentation_prediction,
    # one output per head: the masks' logits, and a joint model's class logits
    onnx_outputs=lambda model: ["masks", "logits"] if model.joint else ["masks"],
    serve=load_served_segmenter,
    serve_key="seg_ckpt_path",
)

__all__ = ["TASK", "LesionMasks", "LesionSegmentationDataModule", "StrokeSegmenter"]
