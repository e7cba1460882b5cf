"""Faults injected into real runs: callbacks named from the command line with
`+callbacks.fault._target_=faults.<Name>` (tests/ on PYTHONPATH for a subprocess)."""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Send this process `signum` at the start of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int, signum: int = int(signal.SIGTERM)) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


class KillAt(SignalAt):
    """`kill -9` this process at the start of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__(epoch, batch, int(signal.SIGKILL))
