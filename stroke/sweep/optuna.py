"""A Hydra sweeper over an Optuna study: resumable, crash-proof and shareable between processes.

It reads the same config as Hydra's Optuna sweeper (`params`, `direction`, `sampler`,
`custom_search_space`; the search space is parsed by `stroke.sweep.search_space`) and adds:

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
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import Trial, TrialState

from stroke.errors import ConfigError
from stroke.runs.record import read_status, short_error
from stroke.sweep.search_space import (
    SearchSpace,
    params_to_overrides,
    parse_search_space,
    suggest,
    trial_overrides,
)
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


def study_directions(direction: Any) -> list[str]:
    """The study's directions from `hydra.sweeper.direction`: one name or a list of them."""
    several = isinstance(direction, Sequence) and not isinstance(direction, str)
    names = list(direction) if several else [direction]
    if not names or any(d not in ("maximize", "minimize") for d in names):
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r}: expected maximize, minimize "
            "or a list of them (one per objective)"
        )
    return names


def search_space_extender(path: str | None) -> Callable[[DictConfig, Trial], None] | None:
    """The function `fn(cfg, trial)` named by `hydra.sweeper.custom_search_space`, or None."""
    if not path:
        return None
    try:
        return instantiate({"_target_": path, "_partial_": True})
    except Exception as e:  # noqa: BLE001 - Hydra wraps every failure to import or build it
        raise ConfigError(
            f"hydra.sweeper.custom_search_space={path!r}: expected the dotted path of a "
            f"function fn(cfg, trial) ({e})"
        ) from e


def save_sweep_config(config: DictConfig, sweep_dir: Path) -> Path:
    """Write the sweep's config to `<sweep_dir>/multirun.yaml`, as Hydra's BasicSweeper does:
    `hydra.overrides.task` holds the command's own overrides, `hydra.sweeper` the search."""
    path = sweep_dir / "multirun.yaml"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    OmegaConf.save(config, tmp)
    tmp.replace(path)  # processes sharing a study write it at once: no reader sees half a file
    return path


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


class ResumableOptunaSweeper(Sweeper):
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
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate}: expected 0.0 to 1.0"
            )
        self.sampler = sampler
        self.directions = study_directions(direction)
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.search_space = search_space
        self.custom_search_space = search_space_extender(custom_search_space)
        self.params = params
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.sweep_dir: str | None = None
        #: errors of the trials this process ran that failed
        self.errors: list[str] = []

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Keep the sweep's config and build the launcher that runs its trials."""
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = config.hydra.sweep.dir

    def _search_space(self, arguments: list[str]) -> SearchSpace:
        """`search_space`, then `params`, then the command's overrides: the last of a key wins."""
        overrides = params_to_overrides(self.params) + list(arguments)
        return parse_search_space(overrides, self.search_space)

    def sweep(self, arguments: list[str]) -> None:
        """Run the trials of the study still missing, then save the best result."""
        with optuna_notices_off():
            self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        space = self._search_space(arguments)
        sweep_dir = Path(str(self.sweep_dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        save_sweep_config(self.config, sweep_dir)
        storage = open_storage(
            self.storage, self.heartbeat_interval, self.grace_period, self.max_retry
        )
        directions = self.directions  # one per objective
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
                self._run_batch(study, trials, space, heartbeat, len(directions))
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
        space: SearchSpace,
        heartbeat: Heartbeat,
        n_objectives: int,
    ) -> None:
        told = 0
        try:
            overrides = [self._configure_trial(trial, space) for trial in trials]
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

    def _configure_trial(self, trial: Trial, space: SearchSpace) -> tuple[str, ...]:
        """Suggest the trial's values; its overrides are those values and the fixed ones."""
        for key, distribution in space.distributions.items():
            suggest(trial, key, distribution)
        for key, value in space.fixed.items():  # recorded, so the study shows what was fixed
            trial.set_user_attr(key, value)
        if self.custom_search_space is not None:
            self.custom_search_space(self.config, trial)
        overlap = sorted(trial.params.keys() & space.fixed.keys())
        if overlap:
            raise ConfigError(
                f"{overlap} fixed by the command or hydra.sweeper.params and also searched by "
                "hydra.sweeper.custom_search_space: a key is either fixed or searched"
            )
        return trial_overrides(trial.params, space.fixed)

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
