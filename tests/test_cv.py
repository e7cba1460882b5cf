"""Cross-validation summary: mean and std across fold runs match their metrics.json files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import TINY, run_module
from omegaconf import OmegaConf

from stroke.runs.cross_validation import SUMMARY_JSON, SUMMARY_MD, write_cv_summary


def fake_run(job_dir: Path, fold: int, metrics: dict[str, float], overrides: list[str]) -> None:
    """A run directory as stroke-train writes it: metrics.json and .hydra/ files."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "classes": ["a", "b"]}))
    hydra_dir = job_dir / ".hydra"
    OmegaConf.save(
        OmegaConf.create([*overrides, f"data.fold={fold}"]), hydra_dir / "overrides.yaml"
    )
    OmegaConf.save(
        OmegaConf.create({"data": {"fold": fold, "folds": 3}}), hydra_dir / "config.yaml"
    )


def test_summary_matches_per_fold_metrics(tmp_path):
    accs, f1s = [0.8, 0.7, 0.9], [0.75, 0.6, 0.85]
    for fold in range(3):
        fake_run(
            tmp_path / str(fold),
            fold,
            {"test/accuracy": accs[fold], "test/f1": f1s[fold], "val/f1": 0.5},
            ["model=cnn_bn"],
        )
    # a second model in the same sweep is a separate group
    for fold in range(3):
        fake_run(tmp_path / str(3 + fold), fold, {"test/accuracy": 0.5}, ["model=resnet18"])

    doc = json.loads(write_cv_summary(tmp_path).read_text())
    cnn, resnet = doc["groups"]
    assert cnn["overrides"] == ["model=cnn_bn"] and cnn["folds"] == [0, 1, 2]
    assert set(cnn["metrics"]) == {"test/accuracy", "test/f1"}  # test metrics only
    # read the per-fold files back and compare
    per_fold = [
        json.loads((tmp_path / str(f) / "metrics.json").read_text())["metrics"] for f in range(3)
    ]
    for name in ("test/accuracy", "test/f1"):
        values = [m[name] for m in per_fold]
        assert cnn["metrics"][name]["values"] == values
        assert cnn["metrics"][name]["mean"] == pytest.approx(statistics.fmean(values))
        assert cnn["metrics"][name]["std"] == pytest.approx(statistics.stdev(values))
    assert resnet["metrics"]["test/accuracy"]["std"] == 0.0
    markdown = (tmp_path / SUMMARY_MD).read_text()
    assert "| test/accuracy | 0.8000 ± 0.1000 | 0.8000 | 0.7000 | 0.9000 |" in markdown
    assert "## model=resnet18" in markdown


def test_missing_folds_are_flagged(tmp_path):
    fake_run(tmp_path / "0", 0, {"test/accuracy": 0.8}, [])
    fake_run(tmp_path / "1", 2, {"test/accuracy": 0.6}, [])
    write_cv_summary(tmp_path)
    assert "2 fold(s) found: 0, 2 (**3 expected**)" in (tmp_path / SUMMARY_MD).read_text()


def test_cli_reports_a_folder_without_fold_runs(tmp_path):
    empty = run_module("stroke.cli.cv", f"path={tmp_path}", timeout=120)
    assert empty.returncode != 0 and "no cross-validation runs under" in empty.stderr
    missing = run_module("stroke.cli.cv", f"path={tmp_path / 'nope'}", timeout=120)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_multirun_over_folds_writes_the_summary(phantom_dir, tmp_path):
    """`stroke-train -m data.fold=0,1,2`: three runs, then the callback's summary."""
    sweep = tmp_path / "multirun"
    result = run_module(
        "stroke.cli.train",
        "-m",
        *TINY,
        f"data.root={phantom_dir}",
        "model=cnn_small",
        "data.folds=3",
        "data.fold=0,1,2",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep / SUMMARY_JSON).read_text())
    (group,) = summary["groups"]
    assert group["folds"] == [0, 1, 2] and group["expected_folds"] == 3
    runs = [json.loads((sweep / str(job) / "metrics.json").read_text()) for job in range(3)]
    assert [r["fold"] for r in runs] == [0, 1, 2]
    accs = [r["metrics"]["test/accuracy"] for r in runs]
    assert group["metrics"]["test/accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert group["metrics"]["test/accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    # the three test splits are disjoint and cover every patient
    tested = [
        {
            line.split(",")[2]
            for line in (sweep / str(j) / "splits.csv").read_text().splitlines()[1:]
            if line.endswith(",test")
        }
        for j in range(3)
    ]
    assert sum(map(len, tested)) == len(set().union(*tested)) == 9
    # and the CLI writes the same numbers again
    again = run_module("stroke.cli.cv", f"path={sweep}", f"out={tmp_path / 'cv'}", timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "cv" / SUMMARY_JSON).read_text())["groups"] == summary["groups"]
