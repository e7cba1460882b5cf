"""Training throughput: `stroke-train`'s Lightning loop and a plain PyTorch loop, timed alike.

Both loops time the same window: from the start of step `warmup` (its batch in hand) to
the end of step `warmup + steps - 1` (optimizer step done, device synchronized), so
worker start-up, cuDNN autotuning and compilation stay outside, and waiting for later
batches stays inside.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stroke.errors import ConfigError
from stroke.performance import tune_module

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Timing:
    """Images and seconds of each timed training step (data wait included)."""

    step_images: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def add(self, images: int, seconds: float) -> None:
        self.step_images.append(images)
        self.step_seconds.append(seconds)

    def extend(self, other: Timing) -> None:
        """Pool the steps of another run of the same loop (repeats)."""
        self.step_images += other.step_images
        self.step_seconds += other.step_seconds

    @property
    def images_per_s(self) -> float:
        """Mean throughput over the window: what a whole run sees."""
        return sum(self.step_images) / sum(self.step_seconds)

    @property
    def median_images_per_s(self) -> float:
        """Throughput of the median step: robust to bursts of other load on a shared machine.

        Meaningful where steps are synchronous (CPU); on a GPU, kernels of one step
        overlap the next, so only the window mean is.
        """
        return statistics.median(
            n / s for n, s in zip(self.step_images, self.step_seconds, strict=True)
        )


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a clock reading means the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, needs a grad scaler) for a Lightning precision string."""
    precision = str(precision)
    if precision in ("32-true", "32", "64-true"):
        return None, False
    if precision == "bf16-mixed":
        return torch.bfloat16, False
    if precision == "16-mixed":
        return torch.float16, device.type == "cuda"
    raise ConfigError(
        f"stroke-bench compares loops at trainer.precision 32-true, bf16-mixed or 16-mixed, "
        f"got {precision!r}"
    )


class InMemoryBatches(Dataset):
    """Ready batches served as they are: the loader that never makes the model wait."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]

    def loader(self) -> DataLoader:
        """A DataLoader yielding the batches unchanged (no collation, no workers)."""
        return DataLoader(self, batch_size=None, shuffle=False, num_workers=0)


def trivial_network(in_chans: int, num_classes: int) -> nn.Module:
    """A network with next to no work: what remains of a training step is the loop's cost."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_chans, num_classes))


def take_batches(loader: Iterable[Batch], count: int, device: torch.device) -> list[Batch]:
    """`count` batches of `loader` (cycled if it is shorter), moved to `device` up front."""
    batches: list[Batch] = []
    while len(batches) < count:
        before = len(batches)
        for images, targets in loader:
            batches.append((images.to(device), targets.to(device)))
            if len(batches) == count:
                break
        if len(batches) == before:
            raise ValueError("the training loader yielded no batch")
    return batches


def plain_loop(
    module: L.LightningModule,
    batches: Iterable[Batch],
    device: torch.device,
    precision: str,
    warmup: int,
    steps: int,
    channels_last: bool | str = "auto",
    compile: bool = False,
) -> Timing:
    """A hand-written loop on the module's network, loss and optimizer: the reference speed."""
    dtype, scaled = autocast_for(precision, device)
    net = tune_module(module.net.to(device), device, channels_last, compile)
    criterion = module.criterion.to(device)
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    scaler = torch.amp.GradScaler(device.type) if scaled else None
    net.train()
    timing, last = Timing(), 0.0
    for step, (x, y) in enumerate(_take(batches, warmup + steps)):
        if step == warmup:
            synchronize(device)
            last = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if step >= warmup:
            if step == warmup + steps - 1:
                synchronize(device)
            now = time.perf_counter()
            timing.add(len(x), now - last)
            last = now
    return timing


class _WindowDone(Exception):
    """Raised by `StepWindow` to end a fit once its window is timed."""


class StepWindow(L.Callback):
    """Times training steps `warmup` .. `warmup + steps - 1` of a fit, then ends the fit."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup = warmup
        self.steps = steps
        self.timing = Timing()
        self.done = False
        self._last = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            synchronize(pl_module.device)
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step - 1  # the optimizer step just taken
        if step < self.warmup:
            return
        last_step = step == self.warmup + self.steps - 1
        if last_step:
            synchronize(pl_module.device)
        now = time.perf_counter()
        self.timing.add(len(batch[0]), now - self._last)
        self._last = now
        if last_step:
            self.done = True
            raise _WindowDone


def lightning_loop(
    trainer_factory,
    module: L.LightningModule,
    warmup: int,
    steps: int,
    datamodule: L.LightningDataModule | None = None,
    train_loader: DataLoader | None = None,
) -> Timing:
    """`stroke-train`'s loop: `trainer_factory(extra_callbacks)` fits the real module."""
    window = StepWindow(warmup, steps)
    trainer: L.Trainer = trainer_factory([window])
    with contextlib.suppress(_WindowDone):
        if datamodule is not None:
            trainer.fit(module, datamodule=datamodule)
        else:
            trainer.fit(module, train_dataloaders=train_loader)
    if not window.done:
        raise RuntimeError(
            f"the fit ended before {warmup + steps} training steps; lower bench.steps"
        )
    return window.timing


def _take(batches: Iterable[Batch], count: int) -> Iterator[Batch]:
    """`count` batches, starting the iterable over when it runs out (e.g. a short epoch)."""
    taken = 0
    while taken < count:
        before = taken
        for batch in batches:
            yield batch
            taken += 1
            if taken == count:
                return
        if taken == before:
            raise ValueError("the training loader yielded no batch")
