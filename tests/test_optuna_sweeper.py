"""The resumable Optuna sweeper with a stand-in launcher: resume, crashes, failures, in seconds."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from stroke.errors import ConfigError
from stroke.sweep.optuna import ResumableOptunaSweeper, SweepError
from stroke.sweep.study import ERROR_ATTR, open_storage


class RecordingLauncher:
    """Runs nothing: returns x as the objective, or fails the trials for which `fails(x)`."""

    def __init__(self, fails=lambda x: False) -> None:
        self.fails = fails
        self.launched: list[tuple[int, float]] = []
        self.overrides: list[dict[str, str]] = []

    def launch(self, job_overrides, initial_job_idx):
        returns = []
        for i, overrides in enumerate(job_overrides):
            self.overrides.append(dict(o.split("=", 1) for o in overrides))
            x = float(self.overrides[-1]["x"])
            self.launched.append((initial_job_idx + i, x))
            ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
            ret.return_value = x
            if self.fails(x):
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(f"CUDA out of memory at x={x}")
            returns.append(ret)
        return returns


def make_sweeper(tmp_path, launcher, n_trials, **kwargs) -> ResumableOptunaSweeper:
    defaults = {
        "direction": "maximize",
        "n_jobs": 1,
        "params": OmegaConf.create({"x": "interval(0, 1)"}),
        "heartbeat_interval": 1,
        "grace_period": 1,
        "max_failure_rate": 1.0,
    }
    sweeper = ResumableOptunaSweeper(
        sampler=optuna.samplers.RandomSampler(),
        storage=f"sqlite:///{tmp_path}/study/optuna.db",
        study_name="s",
        n_trials=n_trials,
        **{**defaults, **kwargs},
    )
    # what Hydra's setup() provides
    sweeper.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / "study")}, "overrides": {"task": []}}}
    )
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


def test_the_command_fixes_values_and_the_sweep_dir_keeps_its_config(tmp_path):
    launcher = RecordingLauncher()
    sweeper = make_sweeper(tmp_path, launcher, n_trials=2)
    sweeper.params = OmegaConf.create({"x": "interval(0, 1)", "model": "choice(a, b)"})
    sweeper.config.hydra.overrides.task = ["model=a", "trainer.max_epochs=1"]
    sweeper.sweep(["model=a", "trainer.max_epochs=1"])

    assert [o["model"] for o in launcher.overrides] == ["a", "a"]  # the command wins
    assert all(o["trainer.max_epochs"] == "1" for o in launcher.overrides)
    trial = load(tmp_path).trials[0]
    assert list(trial.params) == ["x"]
    assert trial.user_attrs["model"] == "a"  # fixed values are recorded with each trial
    # as Hydra's BasicSweeper: the config, whose hydra.overrides.task are the command's own
    saved = OmegaConf.load(tmp_path / "study" / "multirun.yaml")
    assert saved.hydra.overrides.task == ["model=a", "trainer.max_epochs=1"]


def add_depth(cfg, trial):
    """A custom search space: called as fn(cfg, trial) for every trial."""
    assert cfg.hydra.sweep.dir
    trial.suggest_int("depth", 1, 3)


def search_model(cfg, trial):
    trial.suggest_categorical("model", ["a", "b"])


def test_a_custom_search_space_adds_its_parameters(tmp_path):
    launcher = RecordingLauncher()
    path = f"{__name__}.add_depth"
    make_sweeper(tmp_path, launcher, n_trials=2, custom_search_space=path).sweep([])
    assert all(o["depth"] in ("1", "2", "3") for o in launcher.overrides)
    assert all("depth" in t.params for t in load(tmp_path).trials)


def test_a_key_both_fixed_and_searched_is_a_config_error(tmp_path):
    path = f"{__name__}.search_model"
    sweeper = make_sweeper(tmp_path, RecordingLauncher(), n_trials=2, custom_search_space=path)
    with pytest.raises(ConfigError, match=r"\['model'\] fixed by the command"):
        sweeper.sweep(["model=a"])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"direction": "max"}, r"hydra\.sweeper\.direction='max': expected maximize, minimize"),
        ({"max_failure_rate": 2.0}, r"hydra\.sweeper\.max_failure_rate=2\.0: expected 0\.0"),
        ({"custom_search_space": "no.such.fn"}, r"hydra\.sweeper\.custom_search_space='no"),
    ],
)
def test_a_bad_sweeper_setting_names_its_key(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        make_sweeper(tmp_path, RecordingLauncher(), n_trials=1, **setting)


def test_two_objectives_are_two_directions(tmp_path):
    sweeper = make_sweeper(tmp_path, RecordingLauncher(), 1, direction=["maximize", "minimize"])
    assert sweeper.directions == ["maximize", "minimize"]


NO_HYDRA_OPTUNA_SWEEPER = """
import sys

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("hydra_plugins.hydra_optuna_sweeper"):
            raise ImportError(f"{name} is hidden")

sys.meta_path.insert(0, Hidden())
import hydra_plugins.stroke_sweep.optuna_sweeper
import stroke.sweep.optuna
assert not [m for m in sys.modules if m.startswith("hydra_plugins.hydra_optuna_sweeper")]
"""


def test_the_sweeper_needs_no_hydra_optuna_sweeper():
    """`pip install .` is enough: nothing imports the hydra-optuna-sweeper package."""
    result = subprocess.run(
        [sys.executable, "-c", NO_HYDRA_OPTUNA_SWEEPER],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
