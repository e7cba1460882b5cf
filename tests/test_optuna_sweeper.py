"""The resumable Optuna sweeper with a stand-in launcher: resume, crashes, failures, in seconds."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from stroke.sweep.optuna import ResumableOptunaSweeper, SweepError
from stroke.sweep.study import ERROR_ATTR, open_storage


class RecordingLauncher:
    """Runs nothing: returns x as the objective, or fails the trials for which `fails(x)`."""

    def __init__(self, fails=lambda x: False) -> None:
        self.fails = fails
        self.launched: list[tuple[int, float]] = []

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for i, overrides in enumerate(job_overrides):
            x = float(dict(o.split("=", 1) for o in overrides)["x"])
            self.launched.append((initial_job_idx + i, x))
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = x
            if self.fails(x):
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(f"CUDA out of memory at x={x}")
            returns.append(ret)
        return returns


def make_sweeper(tmp_path, launcher, n_trials, **kwargs) -> ResumableOptunaSweeper:
    defaults = {"heartbeat_interval": 1, "grace_period": 1, "max_failure_rate": 1.0}
    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.RandomSampler(),
        direction="maximize",
        storage=f"sqlite:///{tmp_path}/study/optuna.db",
        study_name="s",
        n_trials=n_trials,
        n_jobs=kwargs.pop("n_jobs", 1),
        search_space=None,
        custom_search_space=None,
        params=OmegaConf.create({"x": "interval(0, 1)"}),
        **{**defaults, **kwargs},
    )
    # what Hydra's setup() provides
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "study")}}})
    sweeper.sweep_dir = str(tmp_path / "study")
    sweeper.launcher = launcher
    return sweeper


def load(tmp_path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/study/optuna.db")


def test_rerunning_runs_only_the_missing_trials(tmp_path):
    first = RecordingLauncher()
    make_sweeper(tmp_path, first, n_trials=2).sweep([])
    assert [n for n, _ in first.launched] == [0, 1]  # job directory = trial number

    second = RecordingLauncher()
    make_sweeper(tmp_path, second, n_trials=5, n_jobs=2).sweep([])
    assert [n for n, _ in second.launched] == [2, 3, 4]
    study = load(tmp_path)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5
    assert (tmp_path / "study" / "optimization_results.yaml").is_file()

    third = RecordingLauncher()
    make_sweeper(tmp_path, third, n_trials=5).sweep([])
    assert third.launched == []  # complete: nothing runs twice


def test_a_trial_left_running_by_a_crash_is_failed_and_rerun(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/study/optuna.db", 1, 1, 2)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.enqueue_trial({"x": 0.25})
    with warnings.catch_warnings():  # heartbeats without Study.optimize: on purpose
        warnings.simplefilter("ignore")
        crashed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(crashed._trial_id)
    # its sweeper is gone: no heartbeat for longer than the grace period (SQLite's clock
    # counts whole seconds, so 1 s of grace needs 2+ s of silence)
    time.sleep(2.5)

    launcher = RecordingLauncher()
    make_sweeper(tmp_path, launcher, n_trials=2).sweep([])
    assert launcher.launched[0][1] == 0.25  # the crashed trial's parameters, run again
    trials = load(tmp_path).get_trials()
    assert trials[0].state == TrialState.FAIL and ERROR_ATTR not in trials[0].user_attrs
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 2


def test_a_failing_trial_is_told_fail_with_its_error_and_the_sweep_goes_on(tmp_path):
    launcher = RecordingLauncher(fails=lambda x: x == 0.1)
    storage = open_storage(f"sqlite:///{tmp_path}/study/optuna.db", None, None, None)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.enqueue_trial({"x": 0.1})  # the first trial fails
    make_sweeper(tmp_path, launcher, n_trials=3, max_failure_rate=0.5).sweep([])
    trials = load(tmp_path).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[ERROR_ATTR] == "RuntimeError: CUDA out of memory at x=0.1"
    assert len(trials) == 3  # the failed trial counts as run: not repeated


def test_too_many_failures_stop_the_sweep_with_the_last_error(tmp_path):
    with pytest.raises(SweepError, match="max_failure_rate=0.25.*CUDA out of memory"):
        make_sweeper(
            tmp_path, RecordingLauncher(fails=lambda x: True), 8, max_failure_rate=0.25
        ).sweep([])
    assert len(load(tmp_path).get_trials()) == 3  # stopped once 3 > 0.25 x 8 failed
