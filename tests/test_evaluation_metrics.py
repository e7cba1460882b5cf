"""Evaluation numbers a reviewer can trust: metrics equal scikit-learn's, intervals behave,
thresholds chosen on validation do what they promise, patients aggregate as documented."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from stroke.evaluation.metrics import (
    bootstrap_intervals,
    classification_scores,
    decision_scores,
    expected_calibration_error,
)
from stroke.evaluation.operating_point import choose_threshold
from stroke.evaluation.patient import aggregate_by_patient

CLASSES3 = ["normal", "hemorrhagic", "ischemic"]


def fixed_predictions(n: int, num_classes: int, seed: int = 0, skill: float = 1.5):
    """Labels and softmax probabilities that are informative but imperfect (ties included)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), y] += skill
    logits = np.round(logits, 1)  # ties in scores, as real models produce at low precision
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_metric_agrees_with_scikit_learn(num_classes):
    classes = CLASSES3[:num_classes]
    y, probs = fixed_predictions(300, num_classes)
    pred = probs.argmax(1)
    labels = list(range(num_classes))
    scores = classification_scores(y, probs, classes)

    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        per_class = fn(y, pred, labels=labels, average=None, zero_division=0)
        macro = fn(y, pred, labels=labels, average="macro", zero_division=0)
        assert scores[f"{name}"] == pytest.approx(macro)
        for k, cls in enumerate(classes):
            assert scores[f"{name}/{cls}"] == pytest.approx(per_class[k]), (name, cls)
    one_hot = np.eye(num_classes)[y]
    # binary: one score, P(positive); the negative class ranks by its negation
    ranking = np.stack([-probs[:, 1], probs[:, 1]], axis=1) if num_classes == 2 else probs
    for k, cls in enumerate(classes):
        # specificity of class k = recall of "not k"
        assert scores[f"specificity/{cls}"] == pytest.approx(skm.recall_score(y != k, pred != k))
        assert scores[f"roc_auc/{cls}"] == pytest.approx(
            skm.roc_auc_score(one_hot[:, k], ranking[:, k])
        )
        assert scores[f"average_precision/{cls}"] == pytest.approx(
            skm.average_precision_score(one_hot[:, k], ranking[:, k])
        )
    if num_classes == 2:
        assert scores["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    else:
        assert scores["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
        )
    assert scores["average_precision"] == pytest.approx(
        skm.average_precision_score(one_hot, ranking, average="macro")
    )
    assert scores["specificity"] == pytest.approx(
        np.mean([skm.recall_score(y != k, pred != k) for k in labels])
    )


def test_decision_metrics_agree_with_scikit_learn():
    y, probs = fixed_predictions(200, 2, seed=1)
    truth, decided = y == 1, probs[:, 1] >= 0.4
    scores = decision_scores(truth, decided)
    assert scores["sensitivity"] == pytest.approx(skm.recall_score(truth, decided))
    assert scores["specificity"] == pytest.approx(skm.recall_score(~truth, ~decided))
    assert scores["precision"] == pytest.approx(skm.precision_score(truth, decided))
    assert scores["npv"] == pytest.approx(skm.precision_score(~truth, ~decided))
    assert scores["f1"] == pytest.approx(skm.f1_score(truth, decided))
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(truth, decided))
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, decided))


def test_expected_calibration_error_of_known_cases():
    y = np.array([0, 0, 1, 1])
    # confident and right: calibrated only if confidence equals accuracy
    assert expected_calibration_error(y, np.eye(2)[y]) == pytest.approx(0.0)
    # always 0.8 confident, right half of the time: gap 0.3
    probs = np.array([[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]])
    assert expected_calibration_error(y, probs) == pytest.approx(0.3)


def _interval(n_patients: int, seed: int = 0):
    """Accuracy and its patient-bootstrap interval on `n_patients` x 3 slices."""
    y, probs = fixed_predictions(n_patients * 3, 3, seed=seed, skill=1.0)
    groups = np.repeat([f"P{i}" for i in range(n_patients)], 3)

    def statistic(idx):
        return classification_scores(y[idx], probs[idx], CLASSES3)

    point = statistic(np.arange(len(y)))
    return point, bootstrap_intervals(statistic, len(y), groups, n_boot=300, seed=0)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_patients():
    small_point, small = _interval(30)
    large_point, large = _interval(600)
    for name in (
        "accuracy",
        "balanced_accuracy",
        "f1",
        "roc_auc",
        "average_precision",
        "precision/ischemic",
    ):
        for point, interval in ((small_point, small), (large_point, large)):
            low, high = interval[name]
            assert low <= point[name] <= high, name
        # 20x the patients: the interval shrinks roughly by sqrt(20) ~ 4.5; ask for 2.5
        assert (large[name][1] - large[name][0]) * 2.5 < small[name][1] - small[name][0], name


def test_bootstrap_is_seeded_and_resamples_whole_patients():
    seen_sizes = set()

    def statistic(idx):
        seen_sizes.add(len(idx))
        return {"n": float(len(idx))}

    groups = ["A"] * 5 + ["B"] * 1 + ["C"] * 2
    first = bootstrap_intervals(statistic, 8, groups, n_boot=50, seed=3)
    assert first == bootstrap_intervals(statistic, 8, groups, n_boot=50, seed=3)
    # every resample is a sum of whole patients' slice counts (3 patients drawn)
    possible = {a + b + c for a in (5, 1, 2) for b in (5, 1, 2) for c in (5, 1, 2)}
    assert seen_sizes <= possible and len(seen_sizes) > 3


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_target_sensitivity_operating_point_reaches_the_target_on_validation(target):
    y, probs = fixed_predictions(400, 2, seed=2, skill=1.2)
    point = choose_threshold(y == 1, probs[:, 1], "sensitivity", target)
    achieved = np.mean(probs[y == 1, 1] >= point.threshold)
    assert achieved >= target
    assert point.sensitivity == pytest.approx(achieved)
    # the most specific such threshold: the next higher score would miss the target
    higher = np.unique(probs[:, 1])
    higher = higher[higher > point.threshold]
    if higher.size:
        assert np.mean(probs[y == 1, 1] >= higher[0]) < target


def test_youden_operating_point_maximizes_sensitivity_plus_specificity():
    y, probs = fixed_predictions(300, 2, seed=4)
    point = choose_threshold(y == 1, probs[:, 1], "youden")
    fpr, tpr, _ = skm.roc_curve(y, probs[:, 1])
    assert point.sensitivity + point.specificity - 1 == pytest.approx(np.max(tpr - fpr))


def test_operating_point_needs_both_classes_and_a_known_method():
    with pytest.raises(ValueError, match="1 positive and 0 negative"):
        choose_threshold(np.array([True]), np.array([0.3]))
    with pytest.raises(ValueError, match="evaluation.operating_point='best'"):
        choose_threshold(np.array([True, False]), np.array([0.3, 0.1]), "best")


def test_patient_aggregation_by_max_and_mean():
    ids = ["P1", "P1", "P2", "P2", "P2"]
    targets = np.array([0, 1, 0, 0, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    by_max = aggregate_by_patient(ids, targets, probs, "max")
    assert by_max.patient_ids == ["P1", "P2"]
    assert by_max.targets.tolist() == [1, 0]  # one positive slice makes a positive patient
    np.testing.assert_allclose(by_max.probs, [[0.3, 0.7], [0.6, 0.4]])
    by_mean = aggregate_by_patient(ids, targets, probs, "mean")
    np.testing.assert_allclose(by_mean.probs, [[0.6, 0.4], [0.7, 0.3]])
    assert by_mean.n_slices.tolist() == [2, 3]


def test_binary_report_with_an_operating_point_and_no_patient_ids(tmp_path):
    """One image per patient (e.g. the head CT set): intervals resample images."""
    import json

    from stroke.evaluation import EvaluationConfig, SplitPredictions, write_evaluation

    def split(name, seed):
        y, probs = fixed_predictions(120, 2, seed=seed)
        paths = [f"{name}/{i:03d}.png" for i in range(len(y))]
        return SplitPredictions(name, paths, paths, y, probs)

    config = EvaluationConfig(n_boot=100, operating_point="sensitivity", target_sensitivity=0.9)
    classes = ["none", "bleed"]
    result = write_evaluation(tmp_path, split("test", 5), split("val", 6), classes, config)
    assert result["positive_class"] == "bleed"
    assert result["settings"]["resampling_unit"] == "image"
    assert result["patient_level"] == {} and "patient_level_skipped" in result
    (point,) = result["image_level"]["operating_points"]
    assert point["class"] == "bleed" and point["chosen_on_validation"]["sensitivity"] >= 0.9
    tp, fn = point["test_confusion"]["tp"], point["test_confusion"]["fn"]
    assert point["test"]["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    report = (tmp_path / "report.md").read_text()
    assert "sensitivity >= 0.9" in report and "![ROC curves](roc.png)" in report
    assert (
        "bleed vs rest at the validation threshold"
        in (tmp_path / "classification_report.txt").read_text()
    )
