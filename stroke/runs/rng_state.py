"""The global random number generators in every checkpoint, back before the next batch.

Lightning restores weights, optimizer, scheduler, loops and callbacks from a checkpoint,
but not the global RNGs: dropout and anything else drawing from them then differs after a
resume. `RngState` keeps them in every checkpoint (as tensors and plain lists, so
`weights_only=True` loading still accepts the file) and puts them back before the first
batch after the resume. With EpochSampler (stroke.data.sampling) deciding each epoch's
order and augmentation, a run resumed from `last.ckpt` repeats the uninterrupted run's
batches exactly (tests/test_resume.py).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

RNG_KEY = "stroke_rng_states"


def rng_states() -> dict[str, Any]:
    """The global RNG states of torch, NumPy, Python (and CUDA) as tensors and lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), python_gauss],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what `rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, python_gauss = states["python"]
    random.setstate((version, tuple(internal), python_gauss))


class RngState(Callback):
    """Global RNG states saved in every checkpoint and restored before the next batch."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(RNG_KEY)
        if self._pending is None:
            log.warning("the checkpoint holds no RNG state: the resumed run will draw differently")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # here, not on load: the sanity check and loader set-up run in between
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
