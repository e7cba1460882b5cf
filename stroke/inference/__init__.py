"""Inference on new images: PyTorch and ONNX Runtime backends, batched file prediction, export."""

from stroke.inference.predictor import (
    OnnxBackend,
    TorchBackend,
    predict_files,
    resolve_inputs,
)

__all__ = ["OnnxBackend", "TorchBackend", "predict_files", "resolve_inputs"]
