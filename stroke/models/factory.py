"""One factory for every backbone: the custom CNNs and any timm architecture, by name."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
from torch import nn

from stroke.errors import ConfigError
from stroke.models import custom

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def list_backbones(pattern: str = "") -> list[str]:
    """Every backbone name the factory accepts (optionally filtered by a wildcard pattern)."""
    return timm.list_models(pattern or "*")


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 1,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    drop_rate: float = 0.0,
    **kwargs,
) -> nn.Module:
    """Build backbone `name` with a fresh `num_classes` classifier for `in_chans` input.

    Pretrained weights come from timm's hub download (`pretrained=True`, needs network)
    or from a local file (`weights_path`, offline). Either way timm adapts the first
    convolution to `in_chans` and drops a classifier of another size.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown backbone model.backbone.name={name!r}: not one of the custom CNNs "
            f"{list(custom.CUSTOM_MODELS)} nor a timm architecture{hint}"
        )
    overlay = None
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"model.backbone.weights_path={str(weights_path)!r} does not exist "
                f"(expected a weights file: {', '.join(WEIGHT_SUFFIXES)})"
            )
        overlay = {"file": str(path)}
        pretrained = True
    elif pretrained and name in custom.CUSTOM_MODELS:
        raise ConfigError(
            f"backbone {name!r} has no published weights to download; train it from scratch "
            "(model.backbone.pretrained=false) or give model.backbone.weights_path"
        )
    try:
        return timm.create_model(
            name,
            pretrained=pretrained,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=drop_rate,
            **kwargs,
        )
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        if not pretrained:
            raise
        source = f"file {overlay['file']}" if overlay else "timm's hub download"
        hint = (
            "is it a state dict of this architecture?"
            if overlay
            else "offline? download the weights on a connected machine (e.g. "
            f"timm.create_model({name!r}, pretrained=True) then torch.save(model.state_dict(), "
            "'w.pth')) and pass model.backbone.weights_path=/path/to/w.pth"
        )
        raise ConfigError(
            f"could not load pretrained weights for {name!r} from {source} "
            f"({type(err).__name__}: {err}); {hint}"
        ) from err
