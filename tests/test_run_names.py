"""Run names and HPARAMS columns from what a sweep varies: grids, Optuna searches, single runs."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from stroke.runs.naming import MAX_RUN_NAME, run_name, safe_run_name, swept_keys
from stroke.runs.tensorboard import hparam_columns, metric_columns


def job_hydra(tmp_path, task, mode="MULTIRUN", params=None, command=None):
    """A job's Hydra config as a trial sees it; `command`: the sweep's multirun.yaml overrides."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir(exist_ok=True)
    if command is not None:
        record = {"hydra": {"overrides": {"task": command}}}
        (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(record))
    return OmegaConf.create(
        {
            "mode": mode,
            "sweep": {"dir": str(sweep_dir)},
            "runtime": {"output_dir": str(sweep_dir / "3")},
            "overrides": {"task": task},
            "sweeper": {"params": params},
        }
    )


def test_a_grid_trial_is_named_by_its_swept_keys_only(tmp_path):
    command = ["data.root=/d", "model=cnn_small,resnet18", "model.optimizer.lr=1e-3,3e-4"]
    task = ["data.root=/d", "model=resnet18", "model.optimizer.lr=0.0003"]
    hydra = job_hydra(tmp_path, task, command=[*command, "trainer.max_epochs=3"])
    assert swept_keys(hydra) == ["model", "model.optimizer.lr"]
    assert run_name(hydra) == "model=resnet18,model.optimizer.lr=0.0003"


def test_range_and_choice_sweeps_count_as_swept(tmp_path):
    command = ["seed=range(1,4)", "+trainer.gradient_clip_val=choice(0.5,1.0)", "data.root=/d"]
    task = ["seed=2", "+trainer.gradient_clip_val=0.5", "data.root=/d"]
    hydra = job_hydra(tmp_path, task, command=command)
    assert run_name(hydra) == "seed=2,+trainer.gradient_clip_val=0.5"


def test_an_optuna_trial_is_named_by_the_searched_keys_from_the_sweeper_params(tmp_path):
    params = {"model": "choice(cnn_small, cnn_bn)", "model.optimizer.lr": "interval(1e-4, 3e-3)"}
    task = ["model.optimizer.lr=0.000123456789", "model=cnn_bn", "hparams_search=cnn_optuna"]
    hydra = job_hydra(tmp_path, task, params=params)  # no multirun.yaml: the params still tell
    assert run_name(hydra) == "model=cnn_bn,model.optimizer.lr=0.0001235"
    # a plain value on the command line takes a key out of the search
    hydra = job_hydra(tmp_path, task, params=params, command=["hparams_search=x", "model=cnn_bn"])
    assert run_name(hydra) == "model.optimizer.lr=0.0001235"


def test_a_single_run_is_named_by_its_overrides_or_default(tmp_path):
    task = ["model=resnet18", "~callbacks.gradcam", "data.root=/data/ct scans"]
    assert run_name(job_hydra(tmp_path, task, mode="RUN")) == (
        "model=resnet18,~callbacks.gradcam,data.root=_data_ct_scans"
    )
    assert run_name(job_hydra(tmp_path, [], mode=None)) == "default"
    # a multirun without a sweep value (e.g. a SLURM job) is named like a single run
    assert run_name(job_hydra(tmp_path, ["trainer=ddp"], command=["trainer=ddp"])) == "trainer=ddp"


@pytest.mark.parametrize("extra", ["a", "b"])
def test_a_long_name_is_cut_and_ends_in_a_hash_of_the_whole(extra):
    name = safe_run_name("x=" + "/" * 200 + extra)
    assert len(name) == MAX_RUN_NAME and "/" not in name
    assert name != safe_run_name("x=" + "/" * 200 + ("b" if extra == "a" else "a"))


def test_hparam_columns_put_the_swept_keys_first_and_drop_the_fixed_ones_in_a_sweep():
    params = dict.fromkeys(
        ["choice/callbacks", "choice/model", "data/image_size", "model/backbone/name", "seed"], 1
    )
    assert hparam_columns(params, ["choice/model"], keep_rest=False) == [
        ("choice/model", True),
        ("model/backbone/name", False),  # may vary with the swept group
    ]
    single = hparam_columns(params, ["data/image_size"], keep_rest=True)
    assert single[0] == ("data/image_size", True) and len(single) == len(params)


def test_metric_columns_put_the_headline_then_test_then_overall_before_per_class():
    logged = ["train/loss", "lr-AdamW", "val/f1", "test/f1/normal", "test/f1", "val/f1_best"]
    assert metric_columns([*logged, "test/accuracy"], ["val/f1_best", "val/f1", "nope"]) == [
        "val/f1_best",
        "val/f1",
        "test/accuracy",
        "test/f1",
        "test/f1/normal",
        "train/loss",
        "lr-AdamW",
    ]
