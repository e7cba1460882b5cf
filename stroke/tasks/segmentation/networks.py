"""Segmentation networks from segmentation-models-pytorch, by architecture and encoder name.

Any smp architecture (`unet`, `unetplusplus`, `fpn`, `deeplabv3plus`, ...) with any smp
encoder (`resnet18`, `efficientnet-b0`, ...) or any timm encoder through smp's `tu-`
prefix (`tu-resnet10t`, `tu-convnext_tiny`, ...). Pretrained encoder weights are
downloaded (smp's hub for its own encoders, timm's for `tu-` ones) or read from a local
file (`weights_path`, offline), as the classifiers' backbones are.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from stroke.errors import ConfigError
from stroke.models.factory import WEIGHT_SUFFIXES

#: smp's architectures by lower-case name.
ARCHITECTURES = smp.MODEL_ARCHITECTURES_MAPPING
TIMM_PREFIX = "tu-"


def create_segmentation_network(
    architecture: str,
    encoder: str,
    *,
    num_classes: int,
    in_chans: int = 1,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    aux_classes: int | None = None,
    aux_dropout: float = 0.2,
    **kwargs: Any,
) -> nn.Module:
    """An smp network with `num_classes` output channels (background included).

    `aux_classes`: an image-classification head on the encoder's deepest features (smp's
    auxiliary head), so the network returns (mask logits, class logits).
    """
    model_class = ARCHITECTURES.get(str(architecture).lower())
    if model_class is None:
        close = difflib.get_close_matches(str(architecture).lower(), list(ARCHITECTURES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model.architecture={architecture!r}: smp knows {sorted(ARCHITECTURES)}{hint}"
        )
    _check_encoder(encoder)
    timm_encoder = encoder.startswith(TIMM_PREFIX)
    path = _weights_file(weights_path)
    if path is not None and timm_encoder:
        # timm reads the file itself and adapts the first convolution to in_chans
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    weights: str | bool | None = None
    if pretrained or (path is not None and timm_encoder):
        weights = True if timm_encoder else "imagenet"
    aux_params = {"classes": aux_classes, "dropout": aux_dropout} if aux_classes else None
    try:
        net = model_class(
            encoder_name=encoder,
            encoder_weights=weights,
            in_channels=in_chans,
            classes=num_classes,
            aux_params=aux_params,
            **kwargs,
        )
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        if weights is None:
            raise
        where = f"file {path}" if path is not None else "the hub download"
        raise ConfigError(
            f"could not load pretrained weights for encoder {encoder!r} from {where} "
            f"({type(err).__name__}: {err}); offline, give model.weights_path=/path/to/weights"
        ) from err
    if path is not None and not timm_encoder:
        load_encoder_weights(net.encoder, path, encoder)
    return net


def load_encoder_weights(encoder: nn.Module, path: Path, name: str) -> None:
    """Load an ImageNet state dict (e.g. timm's or torchvision's resnet18) into an smp encoder.

    The classifier's head is dropped and the first convolution summed or repeated to the
    encoder's input channels (timm's `adapt_input_conv`), as a download would be.
    """
    state = timm.models.load_state_dict(str(path))
    first = next(n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    expected = encoder.state_dict()
    if first in state and state[first].shape[1] != expected[first].shape[1]:
        state[first] = timm.models.adapt_input_conv(expected[first].shape[1], state[first])
    state = {k: v for k, v in state.items() if k in expected}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ConfigError(
            f"model.weights_path={str(path)!r} lacks {len(missing)} weights of encoder {name!r} "
            f"(e.g. {missing[0]}); is it a state dict of this encoder?"
        )
    mismatched = [k for k, v in state.items() if v.shape != expected[k].shape]
    if mismatched:
        raise ConfigError(
            f"model.weights_path={str(path)!r} has {mismatched[0]} of shape "
            f"{tuple(state[mismatched[0]].shape)}, encoder {name!r} expects "
            f"{tuple(expected[mismatched[0]].shape)}; is it a state dict of this encoder?"
        )
    encoder.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)


def _weights_file(weights_path: str | Path | None) -> Path | None:
    if weights_path is None:
        return None
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.weights_path={str(weights_path)!r} does not exist "
            f"(expected an encoder weights file: {', '.join(WEIGHT_SUFFIXES)})"
        )
    return path


def _check_encoder(encoder: str) -> None:
    """An smp encoder name, or `tu-` and a timm architecture; else suggest close names."""
    if encoder.startswith(TIMM_PREFIX):
        name = encoder.removeprefix(TIMM_PREFIX).split(".")[0]
        if timm.is_model(name):
            return
        known = [TIMM_PREFIX + n for n in timm.list_models()]
    else:
        if encoder in smp.encoders.encoders:
            return
        known = list(smp.encoders.encoders) + [TIMM_PREFIX + n for n in timm.list_models()]
        if timm.is_model(encoder):
            raise ConfigError(
                f"model.encoder={encoder!r} is a timm architecture smp does not ship itself; "
                f"use model.encoder={TIMM_PREFIX}{encoder}"
            )
    close = difflib.get_close_matches(encoder, known, n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"unknown model.encoder={encoder!r}: neither an smp encoder nor {TIMM_PREFIX}<a timm "
        f"architecture>{hint}"
    )
