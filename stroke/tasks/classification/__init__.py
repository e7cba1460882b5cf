"""Slice classification: one class per image (softmax), any timm or custom backbone.

Parts: `module` (StrokeClassifier: loss, mixup, metrics), `checkpoint` (the trained
classifier rebuilt), `ensemble` (fold ensembles, flip TTA), `evaluate` (stroke-eval's
report), `predict` (stroke-predict's CSV and Grad-CAM), `serve` and `decision` (what
stroke-serve holds and how it decides).
"""

from stroke.inference.onnx_export import OUTPUT_NAME
from stroke.tasks.classification.checkpoint import LoadedClassifier, load_classifier
from stroke.tasks.classification.evaluate import evaluate_classifier
from stroke.tasks.classification.module import StrokeClassifier
from stroke.tasks.classification.predict import run_classification_prediction
from stroke.tasks.classification.serve import ServedModel
from stroke.tasks.registry import TaskParts

TASK = TaskParts(
    name=StrokeClassifier.task,
    summary="one class per image (softmax over the classes)",
    module=StrokeClassifier,
    load=load_classifier,
    evaluate=evaluate_classifier,
    predict=run_classification_prediction,
    onnx_outputs=lambda model: [OUTPUT_NAME],
    serve=ServedModel.load,
    serve_key="ckpt_path",
    ensembles=True,
)

__all__ = ["TASK", "LoadedClassifier", "ServedModel", "StrokeClassifier", "load_classifier"]
