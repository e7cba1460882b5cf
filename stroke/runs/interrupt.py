"""Stopping on SIGINT or SIGTERM without losing work: Ctrl-C, `docker stop`, SLURM preemption.

Outside training, SIGTERM raises `RunInterrupted` as Ctrl-C raises KeyboardInterrupt, so
the run records how it ended instead of vanishing. During `trainer.fit`, the first signal
only sets a flag (`GracefulStop`): the batch in progress finishes, `last.ckpt` is written
(atomically, see stroke.io) with the loops' position, and `RunInterrupted` ends the run;
`stroke-train ckpt_path=.../last.ckpt` continues from the next batch. A second signal stops
at once, leaving the previous `last.ckpt`. The command exits 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM), never 0, so `stroke-train && next-step` stops.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

log = logging.getLogger(__name__)

#: The signals a run stops on gracefully.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """The run was stopped by a signal (a BaseException: sweeps stop too, as for Ctrl-C)."""

    def __init__(self, signum: int, checkpoint: Path | None = None) -> None:
        self.signum = int(signum)
        self.checkpoint = checkpoint
        where = f"; last checkpoint: {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted by {self.signal_name}{where}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


def signal_of(exc: BaseException) -> int | None:
    """The signal an exception stands for: SIGINT for Ctrl-C, SIGTERM for Lightning's
    SIGTERMException, the signal of a RunInterrupted; None for anything else."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(exc, RunInterrupted):
        return exc.signum
    if isinstance(exc, SIGTERMException):
        return int(signal.SIGTERM)
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    return None


class _RaiseInterrupted:
    """A handler raising RunInterrupted in the process that set it; a forked child (a
    DataLoader worker) gets the default behaviour instead of a stray exception."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self.pid:
            raise RunInterrupted(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise RunInterrupted.

    SIGTERM's default ends the process at once (status.json stays `running`, no message);
    Ctrl-C's KeyboardInterrupt is turned by Lightning into `sys.exit(1)`. RunInterrupted
    reaches the command's error handler intact. Only the main thread can set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _RaiseInterrupted()
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `last.ckpt` goes: the `last` ModelCheckpoint's file, else <run>/checkpoints/."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.filename == "last":
            return Path(callback.dirpath) / f"last{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class GracefulStop(Callback):
    """During fit, SIGINT / SIGTERM stop after the current batch with a fresh `last.ckpt`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before Lightning registers its own SIGTERM handler, which calls this one too
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self.signum = None
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        self._restore()  # teardown is not called when fit raises
        # Lightning's own SIGTERMException (a signal during validation): say what to resume from
        last = last_checkpoint_path(trainer)
        if (
            signal_of(exception)
            and getattr(exception, "checkpoint", None) is None
            and last.is_file()
        ):
            exception.checkpoint = last

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop now, last.ckpt stays the previous one
            raise RunInterrupted(signum)
        self.signum = signum
        log.warning(
            "%s received: stopping after this batch and writing last.ckpt (send it again to "
            "stop at once)",
            signal.Signals(signum).name,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.signum is None:
            return
        path = last_checkpoint_path(trainer)
        # with the loops' position: the resume starts at the next batch
        trainer.save_checkpoint(path)
        log.warning(
            "last.ckpt written after batch %d of epoch %d: %s",
            batch_idx,
            trainer.current_epoch,
            path,
        )
        raise RunInterrupted(self.signum, path)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a signal during validation: the epoch's last.ckpt is written by now
        if self.signum is not None:
            raise RunInterrupted(self.signum, last_checkpoint_path(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a signal during the last validation: training is complete, the test is not run
        if self.signum is not None:
            raise RunInterrupted(self.signum, last_checkpoint_path(trainer))
