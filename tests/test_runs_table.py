"""`stroke-runs` on run directories as training writes them, and the HPARAMS of a real run."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
import yaml
from conftest import TINY, compose_config, compose_train, run_module

from stroke.cli.runs import print_table
from stroke.runs import collect_runs, swept_keys, write_status
from stroke.runs.table import build_table, to_csv, to_markdown


def make_run(root, name, overrides, metrics=None, status=None, error=None, pid=None):
    """A run directory like `stroke-train` leaves it (only the files the table reads)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"monitor": "val/f1"}))
    (run / "tensorboard").mkdir()
    if metrics is not None:
        summary = {"metrics": metrics, "epochs": 3, "wall_time_s": 75.5, "classes": ["a", "b"],
                   "best_model_path": "x.ckpt", "eval": {"extra": "keys are fine"}}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(summary))
    if status:
        write_status(run, status, **({"error": error} if error else {}))
        if pid is not None:
            record = json.loads((run / "status.json").read_text())
            (run / "status.json").write_text(json.dumps({**record, "pid": pid}))
    return run


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "multiruns" / "2024-01-01_00-00-00"
    common = ["data.root=/data", "trainer.max_epochs=3"]
    make_run(
        root,
        "0",
        [*common, "model=cnn_small", "model.optimizer.lr=0.001"],
        {"val/f1_best": 0.8, "val/f1": 0.7, "test/accuracy": 0.90, "test/f1": 0.85},
        "finished",
    )
    make_run(
        root,
        "1",
        [*common, "model=resnet18", "model.optimizer.lr=0.001"],
        {"val/f1_best": 0.6, "val/f1": 0.6, "test/accuracy": 0.95, "test/f1": 0.9},
    )
    make_run(
        root,
        "2",
        [*common, "model=cnn_small", "model.optimizer.lr=-1"],
        status="failed",
        error="ValueError: Invalid learning rate: -1",
    )
    make_run(root, "10", [*common, "model=resnet18", "model.optimizer.lr=0.0003"], status="running")
    return root


def test_runs_are_found_with_status_overrides_and_metrics(sweep_dir):
    runs = collect_runs(sweep_dir)
    assert [r.name for r in runs] == ["0", "1", "2", "10"]  # 2 before 10
    assert [r.status for r in runs] == ["finished", "finished", "failed", "running"]
    assert swept_keys(runs) == ["model", "model.optimizer.lr"]  # not the common overrides
    assert runs[0].best_val == 0.8 and runs[1].epochs == 3
    assert runs[2].error == "ValueError: Invalid learning rate: -1"


def test_table_sorted_by_a_metric_in_markdown_and_csv(sweep_dir):
    runs = collect_runs(sweep_dir)
    table = build_table(runs, sort="test/accuracy")
    assert [r.name for r in table.runs] == ["1", "0", "2", "10"]  # unfinished runs last
    markdown = to_markdown(table)
    assert markdown.splitlines()[0].startswith("| run | status | model | model.optimizer.lr |")
    assert "| 1 | finished | resnet18 | 0.001 | 0.6000 | 0.9500 | 0.9000 | 3 | 1m16s |" in markdown
    assert "ValueError: Invalid learning rate: -1" in markdown
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["status"] for r in rows] == ["finished", "finished", "failed", "running"]
    assert float(rows[0]["test/accuracy"]) == 0.95 and rows[0]["best val/f1"] == "0.6"
    # default order: best validation score, highest first
    assert [r.name for r in build_table(runs).runs][:2] == ["0", "1"]


def test_a_run_whose_process_is_gone_is_failed_not_running(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    make_run(tmp_path, "killed", ["x=1"], status="running", pid=int(dead))
    (run,) = collect_runs(tmp_path)
    assert run.status == "failed" and "ended without a result" in run.error


def test_a_run_whose_records_are_damaged_is_failed_saying_so_not_running(tmp_path):
    """Found by the fuzzing harness: an unreadable status.json read as 'running'."""
    run = tmp_path / "a"
    run.mkdir()
    (run / "status.json").write_bytes(b"\xff\xfe{not json")
    (run / "metrics.json").write_text("[1, 2")
    (record,) = collect_runs(tmp_path)
    assert record.status == "failed"
    assert record.error == "status.json and metrics.json cannot be read (not JSON)"


def test_cli_prints_table_markdown_and_plot(sweep_dir, tmp_path, capsys):
    cfg = compose_config("runs", [f"path={sweep_dir}", "sort=test/accuracy"])
    assert print_table(cfg) == 0
    out = capsys.readouterr().out
    assert "4 runs: 2 finished, 1 failed, 1 running; sorted by test/accuracy" in out
    assert "resnet18" in out and "failed" in out

    plot = tmp_path / "p.png"
    cfg = compose_config("runs", [f"path={sweep_dir}", "format=markdown", f"plot={plot}"])
    assert print_table(cfg) == 0
    assert plot.stat().st_size > 1000
    empty = tmp_path / "empty"
    empty.mkdir()
    assert print_table(compose_config("runs", [f"path={empty}"])) == 1


def test_the_command_prints_the_table(sweep_dir):
    result = run_module("stroke.cli.runs", f"path={sweep_dir}", "format=csv", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("run,")


def test_a_trial_shows_its_swept_keys_first_in_tensorboard(phantom_dir, tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from stroke.cli.train import train

    # trial 0 of `stroke-train -m ... model.optimizer.lr=0.0005,0.001`, as Hydra lays it out
    sweep_dir = tmp_path / "sweep"
    common = [*TINY, f"data.root={phantom_dir}", "model=cnn_small"]
    sweep_dir.mkdir()
    command = [*common, "model.optimizer.lr=0.0005,0.001"]
    (sweep_dir / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": command}}})
    )
    run_dir = sweep_dir / "0"
    cfg = compose_train([*common, "model.optimizer.lr=0.0005"], run_dir)
    with read_write(cfg.hydra), open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(sweep_dir)
    HydraConfig().set_config(cfg)
    metrics = train(cfg)

    (tensorboard_run,) = (run_dir / "tensorboard").iterdir()  # listed by what sets it apart
    assert tensorboard_run.name == "model.optimizer.lr=0.0005"
    events = EventAccumulator(str(tensorboard_run))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert not [tag for tag in scalars if tag.startswith("hp/")]  # no copies of the metrics
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model/optimizer/lr"].number_value == pytest.approx(0.0005)
    assert hparams["choice/model"].string_value == "cnn_small"
    assert hparams["data/image_size"].number_value == 32  # recorded, though not a column

    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    columns = [(info.name, info.differs) for info in experiment.hparam_infos]
    assert columns == [("model/optimizer/lr", True)]  # the swept key; the fixed ones left out
    # metric columns name the scalars the run logged, the optimized metric first
    tags = [info.name.tag for info in experiment.metric_infos]
    assert tags[0] == cfg.optimized_metric
    assert set(tags) == set(metrics) and set(tags) <= set(scalars)
    test_metric = next(tag for tag in tags if tag.startswith("test/"))
    assert events.Scalars(test_metric)[-1].value == pytest.approx(metrics[test_metric])


def test_a_failed_trial_is_recorded_and_does_not_stop_a_sweep(tmp_path):
    from stroke.runs.record import RunRecorder

    with RunRecorder(tmp_path / "trial", swallow=True) as trial:  # inside a sweep
        raise RuntimeError("CUDA out of memory")
    assert trial.failed and trial.error == "RuntimeError: CUDA out of memory"
    (run,) = collect_runs(tmp_path)
    assert (run.status, run.error) == ("failed", "RuntimeError: CUDA out of memory")

    with pytest.raises(ValueError), RunRecorder(tmp_path / "single", swallow=False):
        raise ValueError("a single run still fails loudly")
    with RunRecorder(tmp_path / "ok", swallow=True) as ok:
        pass
    assert not ok.failed
    statuses = {r.name: r.status for r in collect_runs(tmp_path)}
    assert statuses == {"ok": "finished", "single": "failed", "trial": "failed"}
