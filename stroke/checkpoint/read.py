"""Reading a checkpoint without running code from the file, and refusing what is not one."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from stroke.checkpoint.upgrade import upgrade
from stroke.errors import CheckpointError


def read_checkpoint(path: str | Path, lazy: bool = False) -> dict:
    """The checkpoint's contents in the current format, loaded with weights_only=True
    (tensors and plain values only) and upgraded when older.

    `lazy=True` memory-maps the tensors instead of reading them: what a command needs to
    learn a checkpoint's task and record before it loads the weights costs the record only.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r} does not exist (expected a .ckpt file)")
    if _is_safetensors(path):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a safetensors weights file, not a stroke-train "
            "checkpoint (no classes, no preprocessing)",
            hint=f"to start a backbone from it: stroke-train model.backbone.weights_path={path}",
        )
    try:
        with warnings.catch_warnings():
            # torch warns about the file's pickle before refusing it: our line says it all
            warnings.simplefilter("ignore")
            checkpoint = _load(path, lazy)
    except Exception as err:  # an unpickling error names the offending global
        raise CheckpointError(f"ckpt_path={str(path)!r} {_unreadable(err)}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint"
        )
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a bare state dict ({len(checkpoint)} tensors, e.g. "
            f"{next(iter(checkpoint))!r}), not a stroke-train checkpoint (no classes, no "
            "preprocessing)",
            hint=f"to start a backbone from its weights: model.backbone.weights_path={path}",
        )
    missing = [k for k in ("state_dict", "hyper_parameters") if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is not a stroke-train checkpoint: it has no {missing}"
        )
    return upgrade(checkpoint, path)


def _load(path: Path, lazy: bool):
    if lazy:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # torch's legacy (non-zip) format cannot be memory-mapped
            pass
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then its JSON header."""
    with path.open("rb") as fh:
        head = fh.read(10)
    return (
        len(head) == 10 and head[8:10] in (b'{"', b"{'") and int.from_bytes(head[:8], "little") > 0
    )


def _unreadable(err: Exception) -> str:
    """Why torch could not load a file, without torch's advice to load it unsafely."""
    text = str(err)
    unsafe = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if unsafe:
        return (
            f"cannot be loaded safely: it asks to unpickle {unsafe.group(1)}, which could run "
            "code from the file (stroke loads checkpoints with weights_only=True)"
        )
    # anything else is a file torch cannot parse (its own text would suggest
    # weights_only=False, which runs code from the file: never say that)
    return (
        "is not a readable PyTorch checkpoint (truncated, or another kind of file; "
        f"torch said {type(err).__name__})"
    )
