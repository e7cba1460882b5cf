"""Classification metrics in NumPy (checked against scikit-learn) and patient bootstrap intervals.

The metric vocabulary of stroke, from TensorBoard to the report, is `METRICS`: each entry
names a metric, says whether it has a value per class, and holds the one function that
computes it. `classification_scores` returns `<metric>` for every entry (for a per-class
one, the macro mean over classes) and `<metric>/<class>` for the per-class ones. The
epoch logs (`val/f1`, `test/roc_auc/hemorrhagic`, stroke.evaluation.epoch_metrics), the
evaluation report's metrics.json and its tables all call it, so a metric added to
`METRICS` appears in all of them.

NumPy rather than scikit-learn calls inside the bootstrap: a thousand resamples of eight
metrics per class take well under a second this way. `tests/test_evaluation_metrics.py`
checks every value against scikit-learn on fixed predictions.

Conventions (scikit-learn's unless said otherwise):
- per-class values are one-vs-rest; `<metric>` alone is their unweighted (macro) mean;
- precision and F1 of a class that is never predicted are 0 (scikit-learn's
  `zero_division=0`; undefined in a split without images); recall, specificity, ROC AUC
  and average precision of a class with no true (or no negative) images are undefined
  (NaN), never TorchMetrics' 0;
- a class with no true images is left out of every macro mean (a split or bootstrap
  resample without it), and so is an undefined (NaN) value;
- balanced accuracy is the macro recall, accuracy the fraction of correct predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from stroke.errors import ConfigError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class); rows are true classes."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, undefined: float) -> np.ndarray:
    """numerator / denominator, `undefined` where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    out = np.full(numerator.shape, undefined, dtype=float)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def roc_auc(y_binary: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count one half)."""
    y_binary = np.asarray(y_binary, dtype=bool)
    n_pos = int(y_binary.sum())
    n_neg = y_binary.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_binary].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_binary: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision x recall increment (scikit-learn's)."""
    y_binary = np.asarray(y_binary, dtype=bool)
    if not y_binary.any():
        return float("nan")
    order = np.argsort(-np.asarray(score), kind="mergesort")
    sorted_score, sorted_true = np.asarray(score)[order], y_binary[order]
    # one point per distinct score: tied images enter together
    last_of_tie = np.r_[np.nonzero(np.diff(sorted_score))[0], sorted_true.size - 1]
    true_pos = np.cumsum(sorted_true)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


@dataclass(frozen=True)
class Predictions:
    """A split's predictions as every metric reads them: counts, and one ranking per class."""

    y_true: np.ndarray  # N true class indices
    ranking: np.ndarray  # N x K one-vs-rest ranking scores
    true_pos: np.ndarray  # K, from the confusion matrix of the decided classes
    predicted: np.ndarray  # K images decided as the class
    actual: np.ndarray  # K images of the class

    @classmethod
    def of(cls, y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray) -> Predictions:
        num_classes = probs.shape[1]
        matrix = confusion_matrix(y_true, y_pred, num_classes)
        # a binary task has one score, P(positive), and the negative class ranks by its
        # negation (1 - P(positive) would break ties by rounding)
        ranking = probs.copy()
        if num_classes == 2:
            ranking[:, 0] = -probs[:, 1]
        return cls(y_true, ranking, np.diag(matrix).astype(float), matrix.sum(0), matrix.sum(1))

    @property
    def total(self) -> int:
        return int(self.actual.sum())


def _accuracy(p: Predictions) -> float:
    return float(p.true_pos.sum() / p.total) if p.total else float("nan")


def _balanced_accuracy(p: Predictions) -> float:
    return _macro(_recall(p), p.actual)


def _never_predicted(p: Predictions) -> float:
    """Precision and F1 of a class never predicted: 0, unless the split holds no image."""
    return 0.0 if p.total else np.nan


def _precision(p: Predictions) -> np.ndarray:
    return _ratio(p.true_pos, p.predicted, _never_predicted(p))


def _recall(p: Predictions) -> np.ndarray:
    return _ratio(p.true_pos, p.actual, np.nan)


def _f1(p: Predictions) -> np.ndarray:
    return _ratio(2 * p.true_pos, p.predicted + p.actual, _never_predicted(p))


def _specificity(p: Predictions) -> np.ndarray:
    return _ratio(p.total - p.predicted - p.actual + p.true_pos, p.total - p.actual, np.nan)


def _one_vs_rest(score: Callable[[np.ndarray, np.ndarray], float]):
    def per_class(p: Predictions) -> np.ndarray:
        return np.array([score(p.y_true == k, p.ranking[:, k]) for k in range(len(p.actual))])

    return per_class


@dataclass(frozen=True)
class ClassificationMetric:
    """One metric of the vocabulary: its name in every log and file, its row in the report,
    and the function of a split's `Predictions` that computes it (a value per class when
    `per_class`, whose macro mean is `<name>`)."""

    name: str
    label: str
    per_class: bool
    compute: Callable[[Predictions], float | np.ndarray]


#: Every classification metric, in the report's reading order; nothing else lists them.
METRICS = (
    ClassificationMetric("accuracy", "accuracy", False, _accuracy),
    ClassificationMetric("balanced_accuracy", "balanced accuracy", False, _balanced_accuracy),
    ClassificationMetric("precision", "precision (macro)", True, _precision),
    ClassificationMetric("recall", "recall / sensitivity (macro)", True, _recall),
    ClassificationMetric("specificity", "specificity (macro)", True, _specificity),
    ClassificationMetric("f1", "F1 (macro)", True, _f1),
    ClassificationMetric("roc_auc", "ROC AUC (macro, one-vs-rest)", True, _one_vs_rest(roc_auc)),
    ClassificationMetric(
        "average_precision", "average precision (macro)", True, _one_vs_rest(average_precision)
    ),
)
#: The names of the metrics with a value per class (the report's per-class columns).
PER_CLASS_METRICS = tuple(m.name for m in METRICS if m.per_class)


def classification_scores(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    y_pred: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric of `METRICS` for a multi-class (or binary) prediction, per class and macro.

    `probs` is N x K (rows sum to 1); `y_pred` defaults to its argmax. Keys are `<metric>`
    (for a per-class metric the macro mean) and `<metric>/<class>`.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=float).reshape(len(y_true), len(class_names))
    predictions = Predictions.of(y_true, probs, probs.argmax(axis=1) if y_pred is None else y_pred)
    scores: dict[str, float] = {}
    for metric in METRICS:
        value = metric.compute(predictions)
        if not metric.per_class:
            scores[metric.name] = float(value)
            continue
        scores[metric.name] = _macro(value, predictions.actual)
        for cls, class_value in zip(class_names, value, strict=True):
            scores[f"{metric.name}/{cls}"] = float(class_value)
    return scores


def _macro(per_class: np.ndarray, actual: np.ndarray) -> float:
    """The mean over the classes with true images, undefined (NaN) values left out."""
    return _nanmean(np.asarray(per_class, dtype=float)[np.asarray(actual) > 0])


def decision_scores(y_positive: np.ndarray, decided_positive: np.ndarray) -> dict[str, float]:
    """Sensitivity, specificity, precision (PPV), NPV, F1 and accuracy of one yes/no decision."""
    y_positive = np.asarray(y_positive, dtype=bool)
    decided_positive = np.asarray(decided_positive, dtype=bool)
    tp = float(np.sum(y_positive & decided_positive))
    fp = float(np.sum(~y_positive & decided_positive))
    fn = float(np.sum(y_positive & ~decided_positive))
    tn = float(np.sum(~y_positive & ~decided_positive))
    sensitivity = float(_ratio(tp, tp + fn, np.nan))
    specificity = float(_ratio(tn, tn + fp, np.nan))
    return {
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": float(_ratio(tp, tp + fp, 0.0)),
        "npv": float(_ratio(tn, tn + fn, 0.0)),
        "f1": float(_ratio(2 * tp, 2 * tp + fp + fn, 0.0)),
        "accuracy": float(_ratio(tp + tn, tp + tn + fp + fn, np.nan)),
        "balanced_accuracy": _nanmean(np.array([sensitivity, specificity])),
    }


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else float("nan")


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n_items: int,
    groups: Sequence[str] | np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every value `statistic(indices)` returns.

    Resampling draws whole groups (patients) with replacement when `groups` is given, so
    slices of one patient, which are not independent, never pretend to be; otherwise it
    draws items. A resample on which a value is undefined (NaN, e.g. a class missing from
    it) is left out of that value's interval.
    """
    if not 0 < level < 1:
        raise ConfigError(f"evaluation.ci_level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ConfigError(f"evaluation.n_boot must be >= 1, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    # the items of each group, as a run of `order` starting at `first` (one item a group
    # without groups): a resample's indices are gathered at once, not group by group
    if groups is None:
        order, first, size = np.arange(n_items), np.arange(n_items), np.ones(n_items, np.int64)
    else:
        _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        size = np.bincount(inverse)
        first = np.cumsum(size) - size
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        chosen = rng.integers(0, len(size), len(size))
        indices = order[_runs(first[chosen], size[chosen])]
        for name, value in statistic(indices).items():
            samples.setdefault(name, []).append(value)
    tail = 100 * (1 - level) / 2
    intervals = {}
    for name, values in samples.items():
        values_arr = np.asarray(values, dtype=float)
        values_arr = values_arr[~np.isnan(values_arr)]
        if values_arr.size == 0:
            intervals[name] = (float("nan"), float("nan"))
        else:
            low, high = np.percentile(values_arr, [tail, 100 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


def _runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions start..start+length-1 of every run, runs one after the other."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)


def with_intervals(
    point: Mapping[str, float], intervals: Mapping[str, tuple[float, float]]
) -> dict[str, dict[str, object]]:
    """{metric: {"value": v, "ci": [low, high]}} for metrics.json (NaN becomes null)."""
    out = {}
    for name, value in point.items():
        low, high = intervals.get(name, (float("nan"), float("nan")))
        out[name] = {"value": _json_number(value), "ci": [_json_number(low), _json_number(high)]}
    return out


def _json_number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 6)


def reliability_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count per equal-width confidence bin (top-label).

    Confidence is the probability of the predicted class; bin b holds confidences in
    (b/n_bins, (b+1)/n_bins]. Empty bins have NaN confidence and accuracy.
    """
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    mean_conf = _ratio(np.bincount(bins, confidence, n_bins), counts, np.nan)
    accuracy = _ratio(np.bincount(bins, correct, n_bins), counts, np.nan)
    return mean_conf, accuracy, counts


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over confidence bins."""
    mean_conf, accuracy, counts = reliability_bins(y_true, probs, n_bins)
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - mean_conf[filled])
    return float(np.sum(gaps * counts[filled]) / counts.sum())
