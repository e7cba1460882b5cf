"""Grad-CAM heat maps (pytorch-grad-cam) for the custom CNNs and timm backbones.

The target layer is found automatically: for the custom CNNs (StrokeCNN) the activation
of a conv block before its pooling (twice the resolution of the block's output); for timm
models a feature stage their `feature_info` names. It is the last one, unless at the
input size its map would be smaller than 7 x 7 (ResNet's last stage at 224 px): then the
deepest one that is not, since a 2 x 2 map (resnet18 at 64 px) cannot point at a lesion.
A dotted module name (e.g. `layer3`, `features.2.act`) overrides it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from stroke.errors import ConfigError
from stroke.models.custom import StrokeCNN

#: Smallest heat-map side the automatic choice accepts when a shallower stage has more.
MIN_CAM_CELLS = 7


def _stages(net: nn.Module) -> list[tuple[str, int]]:
    """(dotted name, reduction) of each candidate layer, shallow to deep."""
    if isinstance(net, StrokeCNN):
        # the activation precedes the block's pooling: reduction 2**i, not 2**(i + 1)
        return [(f"features.{i}.act", 2**i) for i in range(len(net.features))]
    info = getattr(net, "feature_info", None)
    if info:
        entries = info if isinstance(info, list) else info.get_dicts()
        stages = [
            (str(e["module"]), int(e.get("reduction", 1))) for e in entries if e.get("module")
        ]
        if stages:
            return stages
    convolutions = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ConfigError(f"{type(net).__name__} has no Conv2d layer: give target_layer=")
    return [(convolutions[-1], 1)]


def default_target_layer(net: nn.Module, input_size: int | None = None) -> str:
    """The dotted name of the layer whose activations Grad-CAM weighs, chosen per architecture.

    Without `input_size`, the last stage; with it, the deepest stage whose map is at
    least MIN_CAM_CELLS wide (the last stage when none is).
    """
    stages = _stages(net)
    if input_size:
        wide_enough = [
            name for name, reduction in stages if input_size // reduction >= MIN_CAM_CELLS
        ]
        if wide_enough:
            return wide_enough[-1]
    return stages[-1][0]


def resolve_target_layer(
    net: nn.Module, name: str | None = None, input_size: int | None = None
) -> tuple[str, nn.Module]:
    """The (name, module) Grad-CAM hooks into: `name` when given, else the default."""
    name = name or default_target_layer(net, input_size)
    try:
        return name, net.get_submodule(name)
    except AttributeError as err:
        stages = [n for n, _ in net.named_children()]
        raise ConfigError(
            f"target_layer={name!r} is not a module of {type(net).__name__}; expected a dotted "
            f"name such as {default_target_layer(net)!r} (top-level modules: {stages})"
        ) from err


@contextmanager
def _isolated(net: nn.Module) -> Iterator[None]:
    """Eval mode and gradients enabled; the net's mode and parameter gradients restored after.

    Grad-CAM runs a backward pass. Inside training (the TensorBoard callback) that must not
    leave gradients on the parameters the optimizer is about to use.
    """
    was_training = net.training
    saved = [(p, p.grad) for p in net.parameters()]
    for p, _ in saved:
        p.grad = None
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, grad in saved:
            p.grad = grad
        net.train(was_training)


def grad_cams(
    net: nn.Module,
    images: torch.Tensor,
    target_classes: Sequence[int],
    target_layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM of each image for its target class: N x H x W in [0, 1] at the input size."""
    _, layer = resolve_target_layer(net, target_layer, min(images.shape[-2:]))
    with _isolated(net):
        device = next(net.parameters()).device
        # a fresh leaf that requires grad: the graph exists even when all weights are frozen
        inputs = images.detach().clone().to(device).requires_grad_(True)
        targets = [ClassifierOutputTarget(int(c)) for c in target_classes]
        with GradCAM(model=net, target_layers=[layer]) as cam:
            maps = cam(input_tensor=inputs, targets=targets)
    return np.asarray(maps, dtype=np.float32)


def cam_peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, column) of the heat map's maximum."""
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(row), int(col)


def overlay(image: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """The heat map over the image (uint8 H x W x 1|3) as uint8 RGB, jet colour map."""
    gray = image if image.ndim == 2 else image[..., 0] if image.shape[2] == 1 else None
    rgb = np.repeat(gray[..., None], 3, axis=2) if gray is not None else image
    if cam.shape != rgb.shape[:2]:
        cam = cv2.resize(cam, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    blended = image_weight * rgb.astype(np.float32) + (1 - image_weight) * heat
    return np.clip(blended, 0, 255).astype(np.uint8)
