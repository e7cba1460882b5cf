"""A checkpoint's trained network: its state dict, loaded into a network, or as a weights file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stroke.checkpoint.format import checkpoint_task
from stroke.checkpoint.read import read_checkpoint
from stroke.errors import CheckpointError, ConfigError


def trained_net_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict of the LightningModule's `net` in a checkpoint, without the prefix."""
    return {
        k.removeprefix("net."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("net.")
    }


def load_trained_weights(net: nn.Module, checkpoint: dict, path: Path | str = "") -> nn.Module:
    """The LightningModule's `net.` weights of a checkpoint into `net`, put in eval mode;
    weights that do not fit the network its hyper-parameters describe are a CheckpointError
    naming the first layer that differs and both shapes."""
    weights = trained_net_state(checkpoint)
    expected = net.state_dict()
    for name, tensor in weights.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise CheckpointError(
                f"ckpt_path={str(path)!r}: layer {name} has shape {list(tensor.shape)}, the "
                f"network its hyper-parameters describe has {list(expected[name].shape)}: the "
                "file's weights and hyper-parameters do not belong together"
            )
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"ckpt_path={str(path)!r}: the network does not match its hyper-parameters: "
            f"{len(missing)} layer(s) missing (e.g. {missing[:2]}), {len(unexpected)} "
            f"unexpected (e.g. {unexpected[:2]})"
        )
    net.load_state_dict(weights)
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
