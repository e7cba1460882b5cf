"""Multi-label classification: label sets as targets, the derived `any`, the RSNA weighted
log loss, and a run through stroke-train, stroke-eval and stroke-predict."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_module, write_image
from sklearn.metrics import average_precision_score, roc_auc_score

from stroke.data import CsvSource
from stroke.errors import ConfigError, DatasetError
from stroke.tasks.multilabel import MultiLabelDataModule, multilabel_targets
from stroke.tasks.multilabel.metrics import (
    any_inconsistency,
    enforce_any,
    label_weights,
    multilabel_scores,
    weighted_log_loss,
)

LABELS = ["a", "b"]


def test_any_is_derived_from_the_label_set():
    assert multilabel_targets("b", LABELS, "any").tolist() == [0, 1, 1]
    assert multilabel_targets("none", LABELS, "any").tolist() == [0, 0, 0]
    assert multilabel_targets("a|b", LABELS, None).tolist() == [1, 1]
    # a source that says `any` without a subtype (RSNA has a few) keeps it
    assert multilabel_targets("any", LABELS, "any").tolist() == [0, 0, 1]


def test_the_weighted_log_loss_against_a_hand_computed_value():
    targets = np.array([[1, 0, 1], [0, 0, 0]])
    probs = np.array([[0.8, 0.1, 0.9], [0.3, 0.2, 0.4]])
    weights = label_weights(["a", "b", "any"], {"any": 2})
    assert weights.tolist() == [1, 1, 2]
    # image 1: (-ln .8 - ln .9 - 2 ln .9) / 4; image 2: (-ln .7 - ln .8 - 2 ln .6) / 4
    first = -(math.log(0.8) + math.log(0.9) + 2 * math.log(0.9)) / 4
    second = -(math.log(0.7) + math.log(0.8) + 2 * math.log(0.6)) / 4
    assert weighted_log_loss(targets, probs, weights) == pytest.approx((first + second) / 2)
    assert weighted_log_loss(targets, probs, weights) == pytest.approx(0.2676, abs=1e-4)


def test_a_weight_for_a_label_the_model_lacks_is_an_error():
    with pytest.raises(ConfigError, match=r"log_loss_weights names \['any'\]"):
        label_weights(["a", "b"], {"any": 2})


def test_per_label_metrics_match_scikit_learn_and_undefined_ones_are_nan():
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 3)) < 0.4).astype(float)
    targets[:, 2] = 0  # a label without positives in this split
    probs = np.clip(targets * 0.5 + rng.random((40, 3)) * 0.6, 0, 1)
    scores = multilabel_scores(targets, probs, ["a", "b", "c"], np.ones(3))
    for k, label in enumerate("ab"):
        assert scores[f"roc_auc/{label}"] == pytest.approx(
            roc_auc_score(targets[:, k], probs[:, k])
        )
        assert scores[f"average_precision/{label}"] == pytest.approx(
            average_precision_score(targets[:, k], probs[:, k])
        )
        decided = probs[:, k] >= 0.5
        positive = targets[:, k] == 1
        assert scores[f"sensitivity/{label}"] == pytest.approx(decided[positive].mean())
    assert math.isnan(scores["roc_auc/c"]) and math.isnan(scores["sensitivity/c"])
    assert scores["roc_auc"] == pytest.approx((scores["roc_auc/a"] + scores["roc_auc/b"]) / 2)
    assert scores["micro_roc_auc"] == pytest.approx(roc_auc_score(targets.ravel(), probs.ravel()))


def test_any_consistency_is_reported_and_can_be_enforced():
    probs = np.array([[0.9, 0.2, 0.5], [0.1, 0.1, 0.3]])  # image 0: any 0.5 < a 0.9
    assert any_inconsistency(probs, ["a", "b", "any"], "any") == 0.5
    fixed = enforce_any(probs, ["a", "b", "any"], "any")
    assert fixed[:, 2].tolist() == [0.9, 0.3]
    assert any_inconsistency(fixed, ["a", "b", "any"], "any") == 0.0


def _label_columns_set(root: Path, patients: int = 12, slices: int = 3) -> Path:
    """Images where finding a is a bright square top left, b one bottom right; a CSV with one
    0/1 column per label. Patients have several slices (the series)."""
    rng = np.random.default_rng(0)
    rows = [["path", "patient", "a", "b"]]
    for p in range(patients):
        has_a, has_b = p % 2 == 0, p % 3 == 0
        for s in range(slices):
            image = rng.integers(0, 50, (32, 32), dtype=np.uint8)
            if has_a:
                image[2:12, 2:12] = 230
            if has_b:
                image[20:30, 20:30] = 230
            name = f"images/p{p:02d}_s{s}.png"
            write_image(root / name, image)
            rows.append([name, f"P{p:02d}", int(has_a), int(has_b)])
    with (root / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def test_label_columns_become_label_sets_and_bad_cells_name_the_line(tmp_path):
    root = _label_columns_set(tmp_path, patients=6, slices=1)
    source = CsvSource(root / "labels.csv", label_columns=["a", "b"], patient_column="patient")
    labels = {s.patient_id: s.label for s in source.load()}
    assert labels["P00"] == "a|b" and labels["P01"] == "none" and labels["P03"] == "b"
    text = (root / "labels.csv").read_text().replace("P02,1,0", "P02,yes please,0")
    (root / "labels.csv").write_text(text)
    with pytest.raises(DatasetError, match="line 4: column 'a' holds 'yes please'"):
        source.load()


def test_the_datamodule_refuses_labels_it_was_not_told(tmp_path):
    root = _label_columns_set(tmp_path, patients=6, slices=1)
    source = CsvSource(root / "labels.csv", label_columns=["a", "b"], patient_column="patient")
    dm = MultiLabelDataModule(source, labels=["a"], image_size=32, num_workers=0, cache=False)
    with pytest.raises(DatasetError, match=r"has label\(s\) \['b'\], which are not in"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match="data.sampler=weighted"):
        MultiLabelDataModule(source, labels=["a", "b"], sampler="weighted")


MULTILABEL = [
    "model=multilabel",
    "model.backbone.name=cnn_small",
    "data=csv_multilabel",
    "data.labels=[a,b]",
    "data.any_label=any",
    "data.source.patient_column=patient",
    "data.in_chans=1",
    "data.leakage=off",
    "model.loss.log_loss_weights={any: 2}",
    "model.loss.pos_weight=balanced",
    "monitor=val/weighted_log_loss",
    "monitor_mode=min",
    "evaluation.n_boot=20",
]


@pytest.mark.slow
def test_train_eval_and_predict_a_multilabel_model(tmp_path):
    root = _label_columns_set(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_module(
        "stroke.cli.train", *TINY, *MULTILABEL, f"data.root={root}", "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert report["labels"] == ["a", "b", "any"]
    assert set(report["series_level"]) == {"max", "mean"}
    slice_loss = report["slice_level"]["weighted_log_loss"]
    assert slice_loss["value"] > 0 and len(slice_loss["ci"]) == 2
    assert (run_dir / "eval" / "roc_curves.png").is_file()
    assert "## Label co-occurrence" in (run_dir / "eval" / "report.md").read_text()
    logged = json.loads((run_dir / "metrics.json").read_text())
    assert "test/weighted_log_loss" in json.dumps(logged)

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluated = run_module(
        "stroke.cli.eval", f"ckpt_path={ckpt}", "evaluation.n_boot=20", "data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["slice_level"]["weighted_log_loss"]["value"] == pytest.approx(
        slice_loss["value"], abs=1e-5
    )

    out = tmp_path / "predictions.csv"
    inputs = sorted((root / "images").glob("p00_*.png"))
    predicted = run_module(
        "stroke.cli.predict", f"ckpt_path={ckpt}", f"inputs=[{','.join(map(str, inputs))}]",
        f"output_csv={out}", "num_workers=0", f"hydra.run.dir={tmp_path / 'predict'}",
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["level"] for r in rows].count("slice") == 3
    assert {"prob_a", "prob_b", "prob_any"} <= set(rows[0])
    for row in rows:
        assert 0 <= float(row["prob_any"]) <= 1
