"""A task's trained backbone rebuilt from its checkpoint: the network its hyper-parameters
describe, with the checkpoint's weights (never a download or a pretrained file again)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from stroke.checkpoint import load_trained_weights
from stroke.models.factory import create_model


def trained_backbone(checkpoint: dict, path: Path) -> tuple[nn.Module, int]:
    """(the network in eval mode, its input channels) of a checkpoint whose hyper-parameters
    hold `backbone`, `num_classes` and `input_channels` (classifiers, multi-label models)."""
    hparams = checkpoint["hyper_parameters"]
    backbone = {**hparams["backbone"], "pretrained": False, "weights_path": None}
    channels = int(hparams["input_channels"])
    net = create_model(num_classes=hparams["num_classes"], in_chans=channels, **backbone)
    return load_trained_weights(net, checkpoint, path), channels
