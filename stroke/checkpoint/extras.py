"""Entries added to a finished run's checkpoint after training (e.g. the attention pooling
its report fitted), so commands that load the checkpoint use what the run produced."""

from __future__ import annotations

from pathlib import Path

import torch

from stroke.io import atomic_writer


def add_to_checkpoint(path: str | Path, key: str, value: object) -> Path:
    """Store `value` (tensors and plain values) under `key` in the checkpoint file, replacing
    the file atomically: a crash leaves the old checkpoint, never half of one."""
    path = Path(path)
    content = torch.load(path, map_location="cpu", weights_only=True)
    content[key] = value
    with atomic_writer(path, "wb") as fh:
        torch.save(content, fh)
    return path
