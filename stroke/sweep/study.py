"""Bookkeeping of a persistent Optuna study shared by several sweeper processes.

Which trials count towards `n_trials`, how many to start now, which asked trial is one too
many, and the storage with heartbeats that finds trials left running by a crash.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

#: user attribute of a trial that raised: the error text
ERROR_ATTR = "error"
#: user attribute of a trial asked beyond n_trials by one of several processes
SURPLUS_ATTR = "surplus"


def is_claimed(trial: FrozenTrial) -> bool:
    """A trial that counts towards n_trials: done, running, queued, or failed with an error.

    Not counted: trials failed by a crash (no heartbeat), which are queued again, and
    surplus trials of concurrent processes.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    if trial.state == TrialState.WAITING:  # queued again after a crash: will run
        return True
    return (
        trial.state == TrialState.FAIL
        and ERROR_ATTR in trial.user_attrs
        and not trial.user_attrs.get(SURPLUS_ATTR)
    )


def trials_to_start(trials: Sequence[FrozenTrial], n_trials: int, n_jobs: int) -> int:
    """How many trials to ask for now: queued ones first, then new ones up to n_trials."""
    claimed = sum(is_claimed(t) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return max(0, min(n_jobs, waiting + max(0, n_trials - claimed)))


def is_surplus(trials: Sequence[FrozenTrial], number: int, n_trials: int) -> bool:
    """True when n_trials claimed trials precede trial `number`: another process got there first."""
    return sum(is_claimed(t) for t in trials if t.number < number) >= n_trials


@contextmanager
def optuna_notices_off() -> Iterator[None]:
    """Heartbeats are experimental in Optuna and documented for `Study.optimize` only; we drive
    them from ask/tell on purpose, so these notices would only be noise on every sweep."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def _retry_callback(max_retry: int | None) -> Any:
    """Queues a crashed trial's parameters again (the callback's name changed in Optuna 4.9)."""
    storages = optuna.storages
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    return (retry or storages.RetryFailedTrialCallback)(max_retry)


def open_storage(
    storage: Any, heartbeat_interval: int | None, grace_period: int | None, max_retry: int | None
) -> Any:
    """An RDB storage with heartbeats and re-queueing of crashed trials; SQLite folders created."""
    if storage is None or not isinstance(storage, str):
        return storage  # in memory (not resumable) or an already built storage object
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    with optuna_notices_off():
        return optuna.storages.RDBStorage(
            storage,
            engine_kwargs=engine_kwargs,  # several processes on one SQLite file wait for its lock
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_retry_callback(max_retry),
        )


def display_url(storage: Any) -> str:
    if not isinstance(storage, str):
        return "in memory (not resumable)" if storage is None else type(storage).__name__
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


class Heartbeat:
    """Records Optuna heartbeats of the trials this process runs, from a background thread."""

    def __init__(self, storage: Any, interval: int | None) -> None:
        self.storage = storage
        self.interval = interval
        self.enabled = bool(interval) and hasattr(storage, "record_heartbeat")

    def beat(self, trial_ids: Sequence[int]) -> None:
        if self.enabled:
            for trial_id in trial_ids:
                self.storage.record_heartbeat(trial_id)

    @contextmanager
    def running(self, trial_ids: Sequence[int]) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval):
                try:
                    self.beat(trial_ids)
                except Exception as err:  # noqa: BLE001 - a missed beat is not fatal
                    log.warning("heartbeat not recorded: %s", err)

        thread = threading.Thread(target=loop, name="optuna-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
