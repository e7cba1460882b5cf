"""stroke-train's evaluation directory and `stroke-eval` on a trained checkpoint."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import compose_config, run_module

from stroke.checkpoint import RECORD_KEY, read_checkpoint
from stroke.cli.eval import data_config, evaluate_checkpoint
from stroke.errors import ConfigError
from stroke.evaluation.metrics import METRICS
from stroke.tasks.classification.checkpoint import load_classifier

FIGURES = (
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "roc.png",
    "pr.png",
    "reliability.png",
)


def compose_eval(overrides: list[str]):
    return compose_config("eval", overrides)


def test_train_writes_the_evaluation_directory(trained_run):
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert 0 <= summary["metrics"]["test/accuracy"] <= 1  # the run table's keys stay
    eval_dir = trained_run / "eval"
    assert summary["eval_dir"] == str(eval_dir)
    for name in (
        *FIGURES,
        "metrics.json",
        "report.md",
        "classification_report.txt",
        "predictions_test.csv",
        "predictions_val.csv",
    ):
        assert (eval_dir / name).is_file(), name
    result = json.loads((eval_dir / "metrics.json").read_text())
    metrics = result["image_level"]["metrics"]
    for name in (
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "specificity",
        "f1",
        "roc_auc",
        "average_precision",
        "f1/hemorrhagic",
        "recall/ischemic",
        "ece",
    ):
        value, (low, high) = metrics[name]["value"], metrics[name]["ci"]
        assert low <= value <= high, name
    # slices of a phantom patient share an id: intervals resample patients, and patient
    # level is reported both ways
    assert result["settings"]["resampling_unit"] == "patient"
    assert set(result["patient_level"]) == {"max", "mean"}
    # every metric agrees with what Lightning's test loop logged on the same weights
    names = [m.name for m in METRICS]
    names += [f"{m.name}/{c}" for m in METRICS if m.per_class for c in summary["classes"]]
    for name in names:
        logged, value = summary["metrics"][f"test/{name}"], metrics[name]["value"]
        assert logged == value or logged == pytest.approx(value, abs=1e-5), name
    report = (eval_dir / "report.md").read_text()
    assert all(f"]({name})" in report for name in FIGURES)
    assert "Operating points" in report and "Patient level" in report


def test_checkpoint_loads_with_weights_only_and_records_preprocessing(trained_run):
    checkpoint = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")  # weights_only=True
    assert checkpoint[RECORD_KEY]["preprocessing"]["image_size"] == 32
    classifier = load_classifier(trained_run / "checkpoints" / "last.ckpt")
    assert classifier.class_names == ["normal", "hemorrhagic", "ischemic"]
    assert classifier.preprocessing.in_chans == 1 and classifier.preprocessing.image_size == 32


@pytest.mark.slow
def test_stroke_eval_cli_rebuilds_the_runs_data_and_split(trained_run, tmp_path):
    out = tmp_path / "eval"
    result = run_module(
        "stroke.cli.eval",
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        "data.num_workers=0",
        "evaluation.n_boot=30",
        "evaluation.operating_point=sensitivity",
        "evaluation.target_sensitivity=0.9",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"evaluation directory: {out}" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert "training run's data config with data.num_workers=0" in metrics["context"]["data"]
    with (trained_run / "splits.csv").open() as fh:
        test_paths = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    with (out / "predictions_test.csv").open() as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == test_paths
    for point in metrics["image_level"]["operating_points"]:
        chosen = point["chosen_on_validation"]
        assert chosen["method"] == "sensitivity" and chosen["sensitivity"] >= 0.9
    assert all((out / name).is_file() for name in FIGURES)


def test_data_overrides_apply_on_top_of_the_run_config(trained_run, phantom_dir):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose_eval([f"ckpt_path={ckpt}", "data.batch_size=3"])
    data, origin = data_config(cfg, ["data.batch_size=3"])
    assert data.batch_size == 3 and data.image_size == 32  # 32 from the run, not eval's 128
    assert data.root == str(phantom_dir)
    data, origin = data_config(cfg, ["data=folder", f"data.root={phantom_dir}"])
    assert origin == "data group of conf/eval.yaml"


def test_checkpoint_and_data_that_disagree_get_an_error_naming_both(trained_run):
    classifier = load_classifier(trained_run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError) as err:
        classifier.check_matches(["normal", "stroke"], 3, "the data")
    message = str(err.value)
    assert "['normal', 'hemorrhagic', 'ischemic'] with 1 input channels" in message
    assert "['normal', 'stroke'] with 3;" in message


def test_stroke_eval_refuses_mismatched_data(trained_run, monkeypatch):
    overrides = [
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        "data.in_chans=3",
        "data.num_workers=0",
    ]
    cfg = compose_eval(overrides)
    monkeypatch.setattr("stroke.cli.eval._cli_overrides", lambda: overrides[1:])
    with pytest.raises(ConfigError, match="with 1 input channels, but the data .* with 3;"):
        evaluate_checkpoint(cfg)


def test_missing_or_unsafe_checkpoint_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_classifier(tmp_path / "nope.ckpt")
    import argparse

    import torch

    # any class but tensors and plain containers: unpickling it could run its code
    torch.save(
        {"state_dict": {}, "hyper_parameters": {}, "x": argparse.Namespace()},
        tmp_path / "evil.ckpt",
    )
    with pytest.raises(ConfigError, match="cannot be loaded safely"):
        load_classifier(tmp_path / "evil.ckpt")
