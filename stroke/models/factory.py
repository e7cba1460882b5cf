"""One factory for every backbone: the custom CNNs and any timm architecture, by name.

Pretrained weights, offline: `pretrained=True` first looks in the weights directory
(`STROKE_WEIGHTS_DIR`, else `<stroke home>/weights`) for a file named after the backbone,
`<name>.safetensors` (or `.pth`, `.pt`, `.bin`; a timm tag such as
`<name>.a1_in1k.safetensors` too), as `python -m stroke.models.prefetch <name>` writes it
on a connected machine; only when there is none does timm download.
"""

from __future__ import annotations

import difflib
import logging
import os
import tempfile
from pathlib import Path

import timm
from torch import nn

from stroke.config import stroke_home
from stroke.errors import ConfigError
from stroke.models import custom

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: a stroke-train checkpoint given as weights_path: its trained network starts the new run
CHECKPOINT_SUFFIX = ".ckpt"
#: environment variable naming the directory of pre-fetched weights
WEIGHTS_DIR_ENV = "STROKE_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Where pre-fetched weights are looked for: `STROKE_WEIGHTS_DIR`, else home/weights."""

    return Path(os.environ.get(WEIGHTS_DIR_ENV) or stroke_home() / "weights").expanduser()


def find_local_weights(name: str, directory: Path | None = None) -> Path | None:
    """The weights file of backbone `name` in the weights directory, or None.

    `<name><suffix>` first, then a tagged file `<name>.<tag><suffix>` (the first by name).
    """
    directory = weights_dir() if directory is None else Path(directory)
    if not directory.is_dir():
        return None
    for suffix in WEIGHT_SUFFIXES:
        if (directory / f"{name}{suffix}").is_file():
            return directory / f"{name}{suffix}"
    tagged = sorted(
        p for p in directory.glob(f"{name}.*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    return tagged[0] if tagged else None


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
                f"(expected a weights file: {', '.join(WEIGHT_SUFFIXES)}, or a stroke-train "
                f"{CHECKPOINT_SUFFIX} checkpoint)"
            )
        if path.suffix == CHECKPOINT_SUFFIX:
            with tempfile.TemporaryDirectory(prefix="stroke-weights-") as tmp:
                # imported here: stroke.checkpoint reads preprocessing, which the models
                # package must not need to be imported
                from stroke.checkpoint import checkpoint_net_weights

                weights, trained_chans = checkpoint_net_weights(path, name, Path(tmp))
                log.info("%s starts from the network trained in %s", name, path)
                # timm reads the file's channels from input_size[0]; the size is not used
                overlay = {"file": str(weights), "input_size": (trained_chans, 224, 224)}
                return _create(
                    name, num_classes, in_chans, drop_rate, kwargs, overlay, True,
                    source=f"checkpoint {path}",
                )  # fmt: skip
        overlay = {"file": str(path)}
        pretrained = True
    elif pretrained and name in custom.CUSTOM_MODELS:
        raise ConfigError(
            f"backbone {name!r} has no published weights to download; train it from scratch "
            "(model.backbone.pretrained=false) or give model.backbone.weights_path"
        )
    elif pretrained and (local := find_local_weights(name)) is not None:
        overlay = {"file": str(local)}
    return _create(name, num_classes, in_chans, drop_rate, kwargs, overlay, pretrained)


def _create(
    name: str,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    kwargs: dict,
    overlay: dict | None,
    pretrained: bool,
    source: str | None = None,
) -> nn.Module:
    """timm.create_model; a failure to load weights is one line naming where they came from."""
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
    except (OSError, RuntimeError, ValueError, KeyError, NotImplementedError) as err:
        if not pretrained:
            raise
        source = source or (f"file {overlay['file']}" if overlay else "timm's hub download")
        hint = (
            "is it a state dict of this architecture, with the same model.backbone keys?"
            if overlay
            else f"offline? no {name}.safetensors in the weights directory {weights_dir()} "
            f"({WEIGHTS_DIR_ENV}); fetch it on a connected machine with `python -m "
            f"stroke.models.prefetch {name} --dir weights` and copy the folder there, or pass "
            "model.backbone.weights_path=/path/to/file"
        )
        raise ConfigError(
            f"could not load pretrained weights for {name!r} from {source} "
            f"({type(err).__name__}: {err}); {hint}"
        ) from err
