"""Inference on new images: safe checkpoint loading, PyTorch and ONNX Runtime backends, export."""

from stroke.inference.checkpoint import LoadedClassifier, Preprocessing, load_classifier
from stroke.inference.predictor import (
    OnnxBackend,
    TorchBackend,
    predict_files,
    resolve_inputs,
)

__all__ = [
    "LoadedClassifier",
    "OnnxBackend",
    "Preprocessing",
    "TorchBackend",
    "load_classifier",
    "predict_files",
    "resolve_inputs",
]
