"""The pieces of sweeps that need no training: device slots, study bookkeeping, configs."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import optuna
import pytest
import torch
from conftest import compose_train
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from stroke.errors import ConfigError
from stroke.hardware import usable_cpu_ids as usable_cpus
from stroke.sweep.devices import assign_trial_slots, split_cpus, visible_gpus
from stroke.sweep.optuna import consecutive_runs, objective_values
from stroke.sweep.study import ERROR_ATTR, SURPLUS_ATTR, is_claimed, is_surplus, trials_to_start


# -- device slots ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_gpus", [1, 2, 4, 8])
def test_n_parallel_trials_get_n_distinct_gpus(n_gpus):
    gpus = [str(g) for g in range(n_gpus)]
    slots = assign_trial_slots(gpus, cpus=range(32))
    assert len(slots) == n_gpus  # one trial per GPU by default
    assert sorted(s.gpu for s in slots) == gpus
    cores = [c for s in slots for c in s.cpus]
    assert len(cores) == len(set(cores)) == 32  # disjoint blocks covering every core
    assert all(s.env()["CUDA_VISIBLE_DEVICES"] == s.gpu for s in slots)


def test_several_trials_per_gpu_spread_over_gpus_first():
    slots = assign_trial_slots(["0", "1"], cpus=range(8), trials_per_gpu=3)
    assert [s.gpu for s in slots] == ["0", "1", "0", "1", "0", "1"]
    # two trials at once on two GPUs never share one
    two = assign_trial_slots(["0", "1"], cpus=range(8), parallel_trials=2, trials_per_gpu=3)
    assert {s.gpu for s in two} == {"0", "1"}


def test_gpus_from_the_parent_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    slots = assign_trial_slots(visible_gpus("auto"), cpus=range(4))
    assert [s.gpu for s in slots] == ["2", "3"]
    assert visible_gpus(None) == []
    assert visible_gpus([5, 7]) == ["5", "7"]


def test_cpu_trials_divide_the_cores_and_their_threads():
    slots = assign_trial_slots([], cpus=[0, 1], parallel_trials=2)
    assert [s.cpus for s in slots] == [(0,), (1,)]
    for slot in slots:
        env = slot.env()
        assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU trial sees no GPU
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert [len(s.cpus) for s in assign_trial_slots([], cpus=range(16))] == [4, 4, 4, 4]
    assert split_cpus([0, 1, 2], 2) == [(0, 1), (2,)]
    assert split_cpus([0], 3) == [(0,), (0,), (0,)]  # more trials than cores: they share


def test_more_parallel_trials_than_gpu_slots_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="parallel_trials=3.*trials_per_gpu=1"):
        assign_trial_slots(["0", "1"], cpus=range(4), parallel_trials=3)
    with pytest.raises(ConfigError, match="trials_per_gpu must be >= 1"):
        assign_trial_slots(["0"], cpus=range(4), trials_per_gpu=0)


# -- study bookkeeping -------------------------------------------------------------------------
def _trial(state, number_attrs=None, value=None):
    kwargs = {"value": value} if state == TrialState.COMPLETE else {}
    return create_trial(state=state, user_attrs=number_attrs or {}, **kwargs)


def _study_with(*trials):
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        study.add_trial(trial)
    return study.get_trials(deepcopy=False)


def test_only_trials_still_missing_are_started():
    trials = _study_with(
        _trial(TrialState.COMPLETE, value=0.5),
        _trial(TrialState.COMPLETE, value=0.7),
        _trial(TrialState.FAIL, {ERROR_ATTR: "ValueError: bad lr"}),  # ran: counts
        _trial(TrialState.FAIL),  # left by a crash: does not count, re-run
        _trial(TrialState.FAIL, {ERROR_ATTR: "x", SURPLUS_ATTR: True}),  # never ran
    )
    assert [is_claimed(t) for t in trials] == [True, True, True, False, False]
    assert trials_to_start(trials, n_trials=5, n_jobs=4) == 2
    assert trials_to_start(trials, n_trials=5, n_jobs=1) == 1
    assert trials_to_start(trials, n_trials=3, n_jobs=4) == 0


def test_queued_trials_run_even_when_the_study_is_full():
    queued = create_trial(
        state=TrialState.WAITING,
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.0, 1.0)},
    )
    trials = _study_with(_trial(TrialState.COMPLETE, value=1.0), queued)
    assert trials_to_start(trials, n_trials=2, n_jobs=2) == 1


def test_a_trial_beyond_n_trials_is_surplus():
    trials = _study_with(*[_trial(TrialState.COMPLETE, value=0.1) for _ in range(3)])
    assert not is_surplus(trials, number=2, n_trials=3)
    assert is_surplus(trials, number=3, n_trials=3)


def test_job_numbers_follow_trial_numbers_in_consecutive_groups():
    assert consecutive_runs([4, 5, 6]) == [[0, 1, 2]]
    assert consecutive_runs([4, 6, 7, 9]) == [[0], [1, 2], [3]]


def _job(status, value):
    ret = JobReturn(overrides=["x=1"], status=status)
    ret.return_value = value
    return ret


def test_the_objective_of_a_failed_trial_is_explicit():
    assert objective_values(_job(JobStatus.COMPLETED, 0.75), 1) == ([0.75], None)
    values, error = objective_values(_job(JobStatus.FAILED, ValueError("Invalid lr: -1")), 1)
    assert values is None and error == "ValueError: Invalid lr: -1"
    values, error = objective_values(_job(JobStatus.COMPLETED, None), 1)
    assert values is None and "optimized_metric" in error
    values, error = objective_values(_job(JobStatus.COMPLETED, math.nan), 1)
    assert values is None and "not finite" in error


# -- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("search", ["cnn_optuna", "resnet_optuna", "efficientnet_optuna"])
def test_every_search_has_a_resumable_study_and_a_search_space(search, tmp_path):
    cfg = compose_train([f"hparams_search={search}", "paths.log_dir=/logs"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("StrokeOptunaSweeper")
    assert sweeper.study_name == search
    # not dated: the same command finds the same study again
    assert cfg.hydra.sweep.dir == f"/logs/train/studies/{search}"
    assert sweeper.storage == f"sqlite:////logs/train/studies/{search}/optuna.db"
    assert sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/f1_best"
    assert "model" in sweeper.params and "model.optimizer.lr" in sweeper.params


def test_direction_follows_monitor_mode(tmp_path):
    cfg = compose_train(
        ["hparams_search=cnn_optuna", "monitor=val/loss", "monitor_mode=min"], tmp_path
    )
    assert cfg.hydra.sweeper.direction == "minimize"
    assert cfg.optimized_metric == "val/loss_best"


def test_slurm_launcher_follows_the_multinode_trainer(tmp_path):
    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp_multinode"], tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)


def test_parallel_launcher_config_builds(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train(["hydra/launcher=parallel", "hydra.launcher.parallel_trials=2"], tmp_path)
    launcher = instantiate(cfg.hydra.launcher)
    slots = launcher.launcher.slots()
    assert len(slots) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_each_trial_process_sees_only_its_own_gpu():
    """The launcher's environment, in real processes: CUDA sees one GPU, a different one each."""
    slots = assign_trial_slots(visible_gpus("auto"), usable_cpus())
    probe = (
        "import torch; print(torch.cuda.device_count(), torch.cuda.get_device_properties(0).uuid)"
    )
    seen = []
    for slot in slots:
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, **slot.env()},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[0] == "1"
        seen.append(out[1])
    assert len(set(seen)) == len(slots)
