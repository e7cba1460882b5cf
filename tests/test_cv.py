"""Cross-validation summary: mean and std across fold runs match their metrics.json files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
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


def fake_predictions(job_dir: Path, patients, labels, prob_b) -> None:
    """A fold's eval/predictions_test.csv (classes a, b) and metrics.json pointing at it."""
    eval_dir = job_dir / "eval"
    eval_dir.mkdir()
    lines = ["path,patient_id,label,predicted,prob_a,prob_b"]
    for patient, label, p in zip(patients, labels, prob_b, strict=True):
        predicted = "b" if p >= 0.5 else "a"
        lines.append(f"{patient}.png,{patient},{label},{predicted},{1 - p:.6f},{p:.6f}")
    (eval_dir / "predictions_test.csv").write_text("\n".join(lines) + "\n")


def test_pooled_out_of_fold_scores_every_patient_once(tmp_path):
    from sklearn.metrics import accuracy_score, roc_auc_score

    rng = np.random.default_rng(0)
    all_labels, all_probs = [], []
    for fold in range(3):
        patients = [f"p{fold}_{i}" for i in range(10)]
        labels = ["a", "b"] * 5
        probs = np.clip(rng.normal(0.35, 0.2, 10) + 0.3 * (np.arange(10) % 2), 0.01, 0.99)
        fake_run(tmp_path / str(fold), fold, {"test/roc_auc": 0.5 + fold / 10}, [])
        fake_predictions(tmp_path / str(fold), patients, labels, probs)
        all_labels += labels
        all_probs += [round(float(p), 6) for p in probs]
    doc = json.loads(write_cv_summary(tmp_path).read_text())
    pooled = doc["groups"][0]["pooled_out_of_fold"]
    assert pooled["n_images"] == 30 and pooled["n_patients"] == 30
    y = np.array([lab == "b" for lab in all_labels])
    auc = pooled["metrics"]["roc_auc"]
    assert auc["value"] == pytest.approx(roc_auc_score(y, all_probs), abs=1e-6)
    assert auc["ci"][0] <= auc["value"] <= auc["ci"][1]
    accuracy = accuracy_score(y, np.array(all_probs) >= 0.5)
    assert pooled["metrics"]["accuracy"]["value"] == pytest.approx(accuracy, abs=1e-6)
    markdown = (tmp_path / SUMMARY_MD).read_text()
    assert "30 images of 30 patients" in markdown
    assert f"| test/roc_auc | {auc['value']:.4f} | {auc['ci'][0]:.4f} – {auc['ci'][1]:.4f} |" in (
        markdown
    )


def test_pooled_out_of_fold_says_why_it_is_missing(tmp_path):
    fake_run(tmp_path / "0", 0, {"test/roc_auc": 0.8}, [])
    fake_run(tmp_path / "1", 1, {"test/roc_auc": 0.7}, [])
    fake_predictions(tmp_path / "0", ["p0"], ["a"], [0.2])
    doc = json.loads(write_cv_summary(tmp_path).read_text())
    assert "no eval/predictions_test.csv in" in doc["groups"][0]["pooled_out_of_fold"]["skipped"]
    assert "Pooled out-of-fold predictions: not computed" in (tmp_path / SUMMARY_MD).read_text()


def test_a_classifier_fold_table_with_other_classes_is_an_error_naming_the_file(tmp_path):
    from stroke.errors import DatasetError

    for fold in range(2):
        fake_run(tmp_path / str(fold), fold, {"test/roc_auc": 0.8}, [])
        fake_predictions(tmp_path / str(fold), [f"p{fold}"], ["a"], [0.2])
    table = tmp_path / "1" / "eval" / "predictions_test.csv"
    table.write_text(table.read_text().replace("prob_b", "prob_c"))
    with pytest.raises(DatasetError, match=r"1/eval/predictions_test.csv: expected columns"):
        write_cv_summary(tmp_path)
