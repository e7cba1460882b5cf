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
  The sweep stops once more than `max_failure_rate * n_trials` of its trials failed.
"""

from __future__ import annotations

import logging
import math
import socket
import warnings
from collections.abc import Sequence
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
from optuna.trial import Trial, TrialState

from stroke.errors import ConfigError
from stroke.runs.record import read_status, short_error
from stroke.sweep.study import (
    ERROR_ATTR,
    SURPLUS_ATTR,
    Heartbeat,
    display_url,
    is_surplus,
    open_storage,
    optuna_notices_off,
    trials_to_start,
)

log = logging.getLogger(__name__)


class SweepError(RuntimeError):
    """The sweep stopped: too many trials failed."""


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
        #: errors of the trials this process ran that failed
        self.errors: list[str] = []

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
        with optuna_notices_off():
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
            study.study_name, display_url(self.storage), len(done),
            trials_to_start(study.get_trials(deepcopy=False), self.n_trials, self.n_trials),
            self.n_trials, type(self.sampler).__name__, directions,
        )  # fmt: skip
        heartbeat = Heartbeat(storage, self.heartbeat_interval)
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

    def _ask(self, study: optuna.Study, batch: int, heartbeat: Heartbeat) -> list[Trial]:
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
        heartbeat: Heartbeat,
        n_objectives: int,
    ) -> None:
        overrides = self._configure_trials(trials, space, fixed)
        told = 0
        try:
            with heartbeat.running([t._trial_id for t in trials]):
                # job directory = trial number: unique across resumes and processes
                for group in consecutive_runs([t.number for t in trials]):
                    returns = self.launcher.launch(
                        [overrides[i] for i in group], initial_job_idx=trials[group[0]].number
                    )
                    self._tell(study, [trials[i] for i in group], returns, n_objectives)
                    told += len(group)
        except BaseException:
            # Ctrl-C, or a launcher error (e.g. a key that does not exist): the trials that did
            # not run are failed without an error, so they count as missing, and queued again
            for trial in trials[told:]:
                study.tell(trial, state=TrialState.FAIL)
                study.enqueue_trial(trial.params)
            log.warning("stopped: %d trial(s) queued again for the next run", len(trials) - told)
            raise

    def _tell(
        self,
        study: optuna.Study,
        trials: list[Trial],
        returns: Sequence[JobReturn],
        n_objectives: int,
    ) -> None:
        """Report each finished job to the study: its values, or FAIL with its error."""
        for trial, ret in zip(trials, returns, strict=True):
            values, error = objective_values(ret, n_objectives)
            if error is None:
                study.tell(trial, values)
                continue
            trial.set_user_attr(ERROR_ATTR, error[:4000])
            study.tell(trial, state=TrialState.FAIL)
            self.errors.append(error)
            log.warning("trial %d failed (the sweep goes on): %s", trial.number, error)

    def _check_failures(self, study: optuna.Study) -> None:
        """Stop when this run's failures exceed the budget (earlier runs' do not count, so a
        study can be resumed once the cause is fixed)."""
        if len(self.errors) > self.max_failure_rate * self.n_trials:
            raise SweepError(
                f"{len(self.errors)} trials of study {study.study_name!r} failed in this run, "
                f"more than hydra.sweeper.max_failure_rate={self.max_failure_rate} "
                f"x n_trials={self.n_trials}; last error: {self.errors[-1]}; "
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
