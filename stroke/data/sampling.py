"""The training order and augmentation draws as a function of (seed, epoch): resumable exactly.

PyTorch's RandomSampler draws each epoch's order from the global RNG, and albumentations
draws from a generator seeded from the OS unless told otherwise: two runs with the same
seed did not augment alike, and a run resumed from `last.ckpt` did not see the batches the
uninterrupted run saw. `EpochSampler` derives each epoch's permutation (or weighted draw)
and one augmentation seed per image from `(seed, epoch)` alone, whatever the number of
workers; the dataset seeds its augmentation with it (`seed_transform`). Resumed mid-epoch
(a checkpoint written after a batch, e.g. on SIGTERM), it skips the images the finished
batches held, so the run continues with the batch it would have seen next.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

#: (epoch, batches of that epoch already trained) for the iterator about to start, or None
Position = Callable[[], tuple[int, int] | None]


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields `(index, augmentation seed)`: a permutation of the items (or, with `weights`,
    a draw with replacement) that depends only on `seed` and the epoch.

    `position` says which epoch the next iterator serves and how many of its batches are
    done (`training_position` reads Lightning's loops); without it (or when it returns
    None: no trainer), each iterator is the next epoch, from its start.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        batch_size: int,
        weights: Sequence[float] | None = None,
        position: Position | None = None,
    ) -> None:
        self.size = size
        self.seed = int(seed)
        self.batch_size = batch_size
        self.weights = torch.as_tensor(weights, dtype=torch.double) if weights is not None else None
        self.position = position
        self._iterators = 0

    def __len__(self) -> int:
        return self.size

    def order(self, epoch: int) -> list[tuple[int, int]]:
        """The epoch's full sequence of (index, augmentation seed)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.weights is None:
            indices = torch.randperm(self.size, generator=generator)
        else:
            indices = torch.multinomial(self.weights, self.size, True, generator=generator)
        seeds = torch.randint(0, 2**31 - 1, (self.size,), generator=generator)
        return list(zip(indices.tolist(), seeds.tolist(), strict=True))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.position() if self.position is not None else None
        epoch, done = position if position is not None else (self._iterators, 0)
        self._iterators += 1
        yield from self.order(epoch)[done * self.batch_size :]


def training_position(trainer: Any) -> tuple[int, int] | None:
    """(epoch, finished batches of it) of a Lightning trainer's fit loop, for EpochSampler.

    `epoch_progress.current.processed` is the epoch being (or about to be) trained, also
    right after a checkpoint was restored; an epoch `started` but not yet `processed` was
    interrupted after `batch_progress.current.processed` batches. A distributed run starts
    an interrupted epoch over: DistributedSampler expects every epoch at full length.
    """
    if trainer is None or getattr(trainer, "fit_loop", None) is None:
        return None
    epochs = trainer.fit_loop.epoch_progress.current
    batches = trainer.fit_loop.epoch_loop.batch_progress.current
    mid_epoch = epochs.started > epochs.processed and trainer.world_size == 1
    return epochs.processed, batches.processed if mid_epoch else 0


def seed_transform(transform: Any, seed: int) -> None:
    """Seed an albumentations pipeline for one image (other callables are left as they are).

    The pipeline gets its own NumPy and Python generators once; each image then only resets
    their states (a few microseconds, where new generators cost tens).
    """
    if not hasattr(transform, "set_random_state"):
        return
    generators = getattr(transform, _GENERATORS, None)
    if generators is None:
        generators = (np.random.Generator(np.random.PCG64(seed)), random.Random(seed))
        transform.set_random_state(*generators)
        setattr(transform, _GENERATORS, generators)
    numpy_rng, python_rng = generators
    numpy_rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": _mix(seed), "inc": _PCG_INCREMENT},
        "has_uint32": 0,
        "uinteger": 0,
    }
    python_rng.seed(seed)


_GENERATORS = "_stroke_generators"
_PCG_INCREMENT = (0xDA3E39CB94B95BDB << 1) | 1


def _mix(seed: int) -> int:
    """A 128-bit PCG state from a seed (SplitMix64 twice): nearby seeds, unrelated streams."""
    out = 0
    for round_ in range(2):
        z = (seed + (round_ + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        out = (out << 64) | (z ^ (z >> 31))
    return out
