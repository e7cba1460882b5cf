"""Faults injected into real runs: callbacks named from the command line with
`+callbacks.fault._target_=faults.<Name>` (tests/ on PYTHONPATH for a subprocess)."""

from __future__ import annotations

import os
import signal

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
