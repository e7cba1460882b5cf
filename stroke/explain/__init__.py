"""Explanations: Grad-CAM heat maps and the callback that logs them during training."""

from stroke.explain.callback import GradCamCallback
from stroke.explain.gradcam import default_target_layer, grad_cams, overlay, resolve_target_layer

__all__ = [
    "GradCamCallback",
    "default_target_layer",
    "grad_cams",
    "overlay",
    "resolve_target_layer",
]
