"""A multirun ends with the truth: a tally of its trials, a non-zero exit when one failed or
its cross-validation summary could not be written, and a summary that shows undefined fold
metrics as undefined instead of vanishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, run_module

from stroke.runs.cross_validation import SUMMARY_MD, write_cv_summary
from stroke.runs.record import FAILED, FINISHED, write_status
from stroke.runs.verdict import EXIT_SWEEP, tally, trial_statuses


def fold_run(root: Path, fold: int, roc_auc: float | None) -> Path:
    run = root / str(fold)
    run.mkdir(parents=True)
    metrics = {"test/accuracy": 0.8 + fold / 100, "test/roc_auc": roc_auc}
    (run / "metrics.json").write_text(json.dumps({"fold": fold, "folds": 3, "metrics": metrics}))
    return run


def test_an_undefined_fold_metric_is_shown_undefined_and_the_summary_is_written(tmp_path):
    for fold, auc in ((0, 0.9), (1, None), (2, 0.8)):  # fold 1's test split lacked a class
        fold_run(tmp_path, fold, auc)
    summary = json.loads(write_cv_summary(tmp_path).read_text())
    auc = summary["groups"][0]["metrics"]["test/roc_auc"]
    assert auc["values"] == [0.9, None, 0.8] and auc["n"] == 2
    assert auc["mean"] == pytest.approx(0.85)
    table = (tmp_path / SUMMARY_MD).read_text()
    assert "| test/roc_auc | 0.8500 ± 0.0707 | 0.9000 | undefined | 0.8000 |" in table


def test_a_corrupt_fold_summary_names_its_file(tmp_path, capsys):
    fold_run(tmp_path, 0, 0.9)
    (fold_run(tmp_path, 1, 0.8) / "metrics.json").write_text("{not json")
    result = run_module("stroke.cli.cv", str(tmp_path))
    assert result.returncode == 3, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert str(tmp_path / "1" / "metrics.json") in line and "Traceback" not in result.stderr


def test_the_tally_counts_every_trial_and_points_at_a_failed_one(tmp_path):
    for name, status in (("0", FINISHED), ("1", FAILED), ("2", FINISHED)):
        (tmp_path / name).mkdir()
        write_status(tmp_path / name, status)
    statuses = trial_statuses(tmp_path)
    assert tally(statuses) == (
        f"3 trial(s): 2 finished, 1 failed (see {tmp_path / '1' / 'status.json'})"
    )


@pytest.mark.slow
def test_a_sweep_with_a_failed_trial_says_so_and_exits_non_zero(phantom_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = [*TINY, f"data.root={phantom_dir}", "test=false", f"hydra.sweep.dir={sweep}"]
    result = run_module("stroke.cli.train", "-m", "model.optimizer.lr=-1,1e-3", *args)
    assert result.returncode == EXIT_SWEEP, result.stderr[-3000:]
    out = result.stdout
    assert "sweep: 2 trial(s): 1 finished, 1 failed (see" in out
    assert "error: 1 of 2 trial(s) did not finish" in out
    assert result.stderr.count("Traceback") == 0  # the traceback is in the trial's status.json
    failed = json.loads((sweep / "0" / "status.json").read_text())
    assert failed["status"] == FAILED and "Traceback" in failed["traceback"]
    kept = run_module(
        "stroke.cli.train", "-m", "model.optimizer.lr=-1,1e-3", *args[:-1],
        f"hydra.sweep.dir={tmp_path / 'lenient'}", "sweep.fail_on_trial_error=false",
    )  # fmt: skip
    assert kept.returncode == 0 and "1 finished, 1 failed" in kept.stdout


@pytest.mark.slow
def test_a_cv_sweep_whose_summary_cannot_be_written_exits_non_zero(phantom_dir, tmp_path):
    sweep = tmp_path / "cv"
    args = [*TINY, f"data.root={phantom_dir}", "test=false", f"hydra.sweep.dir={sweep}"]
    # the summary's own file is a folder: it cannot be written
    (sweep / SUMMARY_MD).mkdir(parents=True)
    result = run_module("stroke.cli.train", "-m", "data.folds=2", "data.fold=0,1", *args)
    assert result.returncode == EXIT_SWEEP, result.stderr[-3000:]
    assert f"error: cross-validation summary {sweep / SUMMARY_MD} not written" in result.stdout


def test_another_process_s_running_trial_is_not_a_failure_but_a_dead_one_is(tmp_path):
    """Two processes share an Optuna study: a trial the other one is running is running; a
    trial marked running by a process of this machine that is gone ended without a result."""
    import os
    import socket

    for name, pid in (("alive", os.getpid()), ("dead", 2**22 + 12345)):
        (tmp_path / name).mkdir()
        write_status(tmp_path / name, "running")
        record = json.loads((tmp_path / name / "status.json").read_text())
        record.update(pid=pid, host=socket.gethostname())
        (tmp_path / name / "status.json").write_text(json.dumps(record))
    statuses = trial_statuses(tmp_path)
    assert statuses == {tmp_path / "alive": "running", tmp_path / "dead": "ended without a result"}
    assert "1 running" in tally(statuses) and str(tmp_path / "dead") in tally(statuses)
