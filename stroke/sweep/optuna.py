"""Hydra's Optuna sweeper, made resumable, crash-proof and shareable between processes.

What it adds to `hydra-optuna-sweeper` (whose search-space parsing it reuses):

- **Resume.** `n_trials` is the size of the whole study, not of this invocation: re-running
  the same command runs only the trials still missing. Finished trials are kept and none
  runs twice. Job directories are named by trial number, so they never collide.
- **Crashes.** While a trial runs, its sweeper records an Optuna heartbeat. A trial whose
  heartbeat is older than `grace_period` (its sweeper was killed) is marked FAIL and its
  parameters are queued again, so it counts as missing and is re-run. Ctrl-C does the same
  at once for the trials it interrupts.
- **Several processes on one study.** Each sweeper asks the shared storage for one trial at a
  time (`n_jobs` per batch) and tells it the result: processes run trials asynchronously
  and together stop at `n_trials` (a trial asked by one process beyond the total is marked
  FAIL with user attribute `surplus` and never run).
- **Failures.** A trial that raises is told FAIL, with its error in the user attribute
  `error`; the sweep goes on. It counts as run (re-running the command does not retry it).
  The sweep stops once more than `max_failure_rate * n_trials` trials failed.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from stroke.errors import ConfigError
from stroke.runs.record import read_status, short_error

log = logging.getLogger(__name__)

#: user attribute of a trial that raised: the error text
ERROR_ATTR = "error"
#: user attribute of a trial asked beyond n_trials by one of several processes
SURPLUS_ATTR = "surplus"


class SweepError(RuntimeError):
    """The sweep stopped: too many trials failed."""


# -- bookkeeping of a shared study (pure functions of its trials) ------------------------------
def is_claimed(trial: FrozenTrial) -> bool:
    """A trial that counts towards n_trials: done, running, queued, or failed with an error.

    Not counted: trials failed by a crash (no heartbeat), which are queued again, and
    surplus trials of concurrent processes.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    if trial.state == TrialState.WAITING:
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


def consecutive_runs(numbers: Sequence[int]) -> list[list[int]]:
    """Split positions 0..n-1 of `numbers` into runs of consecutive trial numbers."""
    runs: list[list[int]] = []
    for position, number in enumerate(numbers):
        if runs and number == numbers[runs[-1][-1]] + 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def modern_distribution(distribution: BaseDistribution) -> BaseDistribution:
    """Optuna 3+ distributions for the deprecated ones the Hydra plugin builds (gone in 6)."""
    if isinstance(distribution, FloatDistribution):
        step = None if distribution.log else distribution.step
        return FloatDistribution(
            distribution.low, distribution.high, log=distribution.log, step=step
        )
    if isinstance(distribution, IntDistribution):
        step = 1 if distribution.log else distribution.step
        return IntDistribution(distribution.low, distribution.high, log=distribution.log, step=step)
    return distribution


def objective_values(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """The values to tell Optuna for a finished job, or why the trial failed."""
    if ret.status != JobStatus.COMPLETED:
        error = ret._return_value  # accessing ret.return_value would raise it
        return None, short_error(error) if isinstance(error, BaseException) else str(error)
    value = ret.return_value
    if value is None:
        recorded = _recorded_error(ret)
        return None, recorded or (
            "the run returned no objective: is `optimized_metric` one of the metrics it logs?"
        )
    try:
        values = [float(value)] if n_objectives == 1 else [float(v) for v in value]
    except (TypeError, ValueError):
        return None, f"objective must be {n_objectives} number(s), got {value!r}"
    if len(values) != n_objectives:
        return None, f"expected {n_objectives} objective values, got {len(values)}"
    if not all(math.isfinite(v) for v in values):
        return None, f"objective is not finite: {values}"
    return values, None


def _recorded_error(ret: JobReturn) -> str | None:
    """The error a trial wrote to its status.json (our entry point swallows it in sweeps)."""
    output_dir = (
        OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
    )
    status = read_status(Path(output_dir)) if output_dir else None
    return status.get("error") if status and status.get("status") == "failed" else None


# -- storage ----------------------------------------------------------------------------------
@contextmanager
def _optuna_notices_off() -> Iterator[None]:
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
    with _optuna_notices_off():
        return optuna.storages.RDBStorage(
            storage,
            engine_kwargs=engine_kwargs,  # several processes on one SQLite file wait for its lock
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_retry_callback(max_retry),
        )


def _display_url(storage: Any) -> str:
    if not isinstance(storage, str):
        return "in memory (not resumable)" if storage is None else type(storage).__name__
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


class _Heartbeat:
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


class ResumableOptunaSweeper(OptunaSweeperImpl):
    """Hydra Optuna sweeper whose `n_trials` is the size of a persistent, shared study."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int = 1,
        max_failure_rate: float = 0.25,
        search_space: Any = None,
        custom_search_space: str | None = None,
        params: Any = None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
        max_retry: int | None = 2,
    ) -> None:
        if isinstance(sampler, optuna.samplers.GridSampler) or getattr(sampler, "func", None) is (
            optuna.samplers.GridSampler
        ):
            raise ConfigError(
                "hydra/sweeper/sampler=grid is not supported by stroke_optuna: "
                "grids are plain multiruns (`stroke-train -m key=a,b other=c,d`)"
            )
        super().__init__(
            sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
            search_space, custom_search_space, params,
        )  # fmt: skip
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict]:
        self._process_searchspace_config()
        overrides = self._parse_sweeper_params_config() + list(arguments)
        with warnings.catch_warnings():  # the plugin builds Optuna 2 distributions
            warnings.simplefilter("ignore", FutureWarning)
            distributions, fixed = create_params_from_overrides(overrides)
            distributions = {**(self.search_space_distributions or {}), **distributions}
        space = {k: modern_distribution(d) for k, d in distributions.items() if k not in fixed}
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        """Run the trials of the study still missing, then save the best result."""
        with _optuna_notices_off():
            self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        space, fixed = self._search_space(arguments)
        Path(str(self.sweep_dir)).mkdir(parents=True, exist_ok=True)
        storage = open_storage(
            self.storage, self.heartbeat_interval, self.grace_period, self.max_retry
        )
        directions = self._get_directions()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        optuna.storages.fail_stale_trials(study)
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        log.info(
            "Study %r in %s: %d trial(s) already finished, up to %d of n_trials=%d to run "
            "(sampler %s, directions %s)",
            study.study_name, _display_url(self.storage), len(done),
            trials_to_start(study.get_trials(deepcopy=False), self.n_trials, self.n_trials),
            self.n_trials, type(self.sampler).__name__, directions,
        )  # fmt: skip
        heartbeat = _Heartbeat(storage, self.heartbeat_interval)
        while True:
            optuna.storages.fail_stale_trials(study)
            batch = trials_to_start(study.get_trials(deepcopy=False), self.n_trials, self.n_jobs)
            if batch == 0:
                break
            trials = self._ask(study, batch, heartbeat)
            if trials:
                self._run_batch(study, trials, space, fixed, heartbeat, len(directions))
            self._check_failures(study)
        self._save_results(study, directions)

    def _ask(self, study: optuna.Study, batch: int, heartbeat: _Heartbeat) -> list[Trial]:
        """Ask for trials; those beyond n_trials (another process was faster) are not run."""
        asked = [study.ask() for _ in range(batch)]
        heartbeat.beat([t._trial_id for t in asked])
        everyone = study.get_trials(deepcopy=False)
        trials = []
        for trial in asked:
            if is_surplus(everyone, trial.number, self.n_trials):
                trial.set_user_attr(SURPLUS_ATTR, True)
                study.tell(trial, state=TrialState.FAIL)
                log.info(
                    "trial %d not run: n_trials=%d reached by other processes",
                    trial.number,
                    self.n_trials,
                )
            else:
                trial.set_user_attr("host", socket.gethostname())
                trials.append(trial)
        return trials

    def _run_batch(
        self,
        study: optuna.Study,
        trials: list[Trial],
        space: dict[str, BaseDistribution],
        fixed: dict,
        heartbeat: _Heartbeat,
        n_objectives: int,
    ) -> None:
        overrides = self._configure_trials(trials, space, fixed)
        returns: list[JobReturn] = []
        try:
            with heartbeat.running([t._trial_id for t in trials]):
                # job directory = trial number: unique across resumes and processes
                for group in consecutive_runs([t.number for t in trials]):
                    returns += self.launcher.launch(
                        [overrides[i] for i in group], initial_job_idx=trials[group[0]].number
                    )
        except KeyboardInterrupt:
            for trial in trials[len(returns) :]:
                study.tell(trial, state=TrialState.FAIL)  # not counted: queued again
                study.enqueue_trial(trial.params)
            log.warning(
                "interrupted: %d trial(s) queued again for the next run", len(trials) - len(returns)
            )
            raise
        for trial, ret in zip(trials, returns, strict=True):
            values, error = objective_values(ret, n_objectives)
            if error is None:
                study.tell(trial, values)
                continue
            trial.set_user_attr(ERROR_ATTR, error[:4000])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed (the sweep goes on): %s", trial.number, error)

    def _check_failures(self, study: optuna.Study) -> None:
        failed = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if ERROR_ATTR in t.user_attrs and not t.user_attrs.get(SURPLUS_ATTR)
        ]  # fmt: skip
        if len(failed) > self.max_failure_rate * self.n_trials:
            raise SweepError(
                f"{len(failed)} trials of study {study.study_name!r} failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} "
                f"x n_trials={self.n_trials}; last error: {failed[-1].user_attrs[ERROR_ATTR]}; "
                f"see `stroke-runs {self.sweep_dir}`"
            )

    def _save_results(self, study: optuna.Study, directions: list[str]) -> None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("study %r has no finished trial yet", study.study_name)
            return
        if len(directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
        else:
            pareto = [{"params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": pareto}
        results["n_complete"] = len(complete)
        OmegaConf.save(
            OmegaConf.create(results), Path(str(self.sweep_dir)) / "optimization_results.yaml"
        )
