"""A checkpoint's trained network: its state dict, loaded into a network, or as a weights file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stroke.checkpoint.format import checkpoint_task
from stroke.checkpoint.read import read_checkpoint
from stroke.errors import ConfigError


def trained_net_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict of the LightningModule's `net` in a checkpoint, without the prefix."""
    return {
        k.removeprefix("net."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("net.")
    }


def load_trained_weights(net: nn.Module, checkpoint: dict) -> nn.Module:
    """The LightningModule's `net.` weights of a checkpoint into `net`, put in eval mode."""
    net.load_state_dict(trained_net_state(checkpoint))
    return net.eval()


def checkpoint_net_weights(path: Path, name: str, out_dir: Path) -> tuple[Path, int]:
    """The trained network of stroke-train checkpoint `path` as a safetensors file in
    `out_dir`, and the channels it was trained on, for timm to load like any weights file
    (it spreads the first convolution over another number of channels and leaves out a
    classifier of another size). The checkpoint's network must be backbone `name` (a
    `model.backbone`): fine-tuning one architecture from another's weights is refused.
    """
    from safetensors.torch import save_file  # timm's dependency, needed only here

    checkpoint = read_checkpoint(path)
    where = f"model.backbone.weights_path={str(path)!r}"
    backbone = checkpoint["hyper_parameters"].get("backbone")
    if not isinstance(backbone, dict):
        raise ConfigError(
            f"{where} is a {checkpoint_task(checkpoint)} checkpoint without a model.backbone; "
            "a backbone starts from a checkpoint of a backbone (or a weights file)"
        )
    trained = backbone.get("name")
    if trained != name:
        raise ConfigError(
            f"{where} trained backbone {trained!r}, not model.backbone.name={name!r}: "
            f"set model.backbone.name={trained} (and its other keys) to fine-tune it"
        )
    weights = {k: v.contiguous() for k, v in trained_net_state(checkpoint).items()}
    out = Path(out_dir) / f"{name}.safetensors"
    save_file(weights, str(out))
    return out, int(checkpoint["hyper_parameters"].get("input_channels", 1))
