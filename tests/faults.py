"""Faults injected into real runs: callbacks named from the command line with
`+callbacks.fault._target_=faults.<Name>` (tests/ on PYTHONPATH for a subprocess), and
`disk_full`, a full disk for every writer of this process (a command's `main` run here)."""

from __future__ import annotations

import builtins
import errno
import io
import os
import signal
from contextlib import contextmanager

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Send this process `signals` (SIGTERM by default), in order, at the start of batch
    `batch` of epoch `epoch`: what `kill`, Ctrl-C or SLURM would, at a known moment."""

    def __init__(self, epoch: int, batch: int, signals: list[int] | None = None) -> None:
        self.epoch, self.batch = epoch, batch
        self.signals = list(signals) if signals is not None else [int(signal.SIGTERM)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            for signum in self.signals:
                os.kill(os.getpid(), signum)


class KillAt(SignalAt):
    """`kill -9` this process at the start of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__(epoch, batch, [int(signal.SIGKILL)])


class MarkEpoch(Callback):
    """Create the file `path` when epoch `epoch` starts (a switch for an injected fault)."""

    def __init__(self, path: str, epoch: int) -> None:
        self.path, self.epoch = path, epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            open(self.path, "w").close()  # noqa: SIM115


class CrashAt(Callback):
    """Raise at the start of batch `batch` of epoch `epoch`: a crash, nothing saved at it."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError(f"crash injected at epoch {self.epoch}, batch {self.batch}")


class _LimitedFile:
    """A file opened for writing whose writes fail with ENOSPC once `room` bytes are used."""

    def __init__(self, handle, room: list[int]) -> None:
        self._handle, self._room = handle, room

    def write(self, data):
        if len(data) > self._room[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write(2): no file name
        self._room[0] -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __iter__(self):
        return iter(self._handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()


@contextmanager
def disk_full(folder, room: int = 0, when=lambda path: True):
    """Every file opened for writing under `folder` shares `room` bytes; past them a write
    fails with ENOSPC and, as from the kernel, no file name: what a full disk does to every
    writer in this process (ours, matplotlib's, Pillow's), not just to stroke.io's.
    `when(path)` picks the files that meet the full disk (all of them by default)."""
    folder, shared, original = str(folder), [room], builtins.open

    def limited_open(file, mode="r", *args, **kwargs):
        handle = original(file, mode, *args, **kwargs)
        named = isinstance(file, str | bytes | os.PathLike)
        writing = any(flag in mode for flag in "wax+")
        path = os.path.abspath(os.fsdecode(file)) if named else ""
        if not (writing and path.startswith(folder) and when(path)):
            return handle
        return _LimitedFile(handle, shared)

    builtins.open = io.open = limited_open
    try:
        yield
    finally:
        builtins.open = io.open = original
