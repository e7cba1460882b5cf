"""Multi-label metrics in NumPy, for the epoch logs and the report alike (one implementation).

Each label is its own binary problem: ROC AUC, average precision, and (at a threshold)
sensitivity and specificity per label; macro means over the labels where they are defined
and micro means over every (image, label) pair. The RSNA challenge's score is the weighted
multi-label log loss: per image the weighted mean of the labels' binary cross-entropies
(weights `any`=2, others 1 by default), averaged over images,

    L = 1/N  sum_i  [ sum_l w_l * -(y_il log p_il + (1 - y_il) log(1 - p_il)) / sum_l w_l ],

with p clipped to [1e-15, 1 - 1e-15] as scikit-learn's log_loss does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stroke.errors import ConfigError
from stroke.evaluation.metrics import average_precision, roc_auc

#: clipping of probabilities in the log loss (scikit-learn's log_loss)
EPS = 1e-15
#: the per-label metrics, `<name>/<label>` in logs and metrics.json, `<name>` their macro mean
PER_LABEL_METRICS = ("roc_auc", "average_precision", "sensitivity", "specificity", "log_loss")
#: the metrics over all labels at once
OVERALL_METRICS = ("weighted_log_loss", "micro_roc_auc", "micro_average_precision")
#: a metric's name -> whether a higher value is better (Optuna's direction, the monitor's mode)
HIGHER_IS_BETTER = {
    **{name: name != "log_loss" for name in PER_LABEL_METRICS},
    "weighted_log_loss": False,
    "micro_roc_auc": True,
    "micro_average_precision": True,
}


def label_weights(labels: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray:
    """The loss weight of each label: `weights[label]`, 1 for labels not named."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise ConfigError(
            f"model.log_loss_weights names {unknown}, which are not labels of this model "
            f"({list(labels)})"
        )
    values = np.array([float(weights.get(label, 1.0)) for label in labels])
    if (values < 0).any() or values.sum() <= 0:
        raise ConfigError(f"model.log_loss_weights must be >= 0 and not all 0, got {weights}")
    return values


def binary_cross_entropy(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Element-wise -(y log p + (1 - y) log(1 - p)), p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(targets, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def weighted_log_loss(targets: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> float:
    """The RSNA score (see the module docstring); NaN for no images."""
    if len(targets) == 0:
        return float("nan")
    per_image = binary_cross_entropy(targets, probs) @ weights / weights.sum()
    return float(per_image.mean())


def multilabel_scores(
    targets: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    weights: np.ndarray,
    thresholds: Sequence[float] | None = None,
) -> dict[str, float]:
    """Every metric of the module docstring, named as in logs and metrics.json.

    `thresholds` (one per label; 0.5 when not given) decide sensitivity and specificity.
    A metric a split cannot define (a label without positives has no ROC AUC) is NaN.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, len(labels))
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(labels))
    cuts = np.full(len(labels), 0.5) if thresholds is None else np.asarray(thresholds, float)
    scores: dict[str, float] = {}
    per_label: dict[str, list[float]] = {name: [] for name in PER_LABEL_METRICS}
    for j, label in enumerate(labels):
        y, p = targets[:, j] > 0.5, probs[:, j]
        decided = p >= cuts[j]
        positives, negatives = int(y.sum()), int((~y).sum())
        values = {
            "roc_auc": roc_auc(y, p) if positives and negatives else float("nan"),
            "average_precision": average_precision(y, p) if positives else float("nan"),
            "sensitivity": float((decided & y).sum() / positives) if positives else float("nan"),
            "specificity": (
                float((~decided & ~y).sum() / negatives) if negatives else float("nan")
            ),
            "log_loss": (float(binary_cross_entropy(y, p).mean()) if len(y) else float("nan")),
        }
        for name, value in values.items():
            scores[f"{name}/{label}"] = value
            per_label[name].append(value)
    for name, values in per_label.items():
        scores[name] = _nanmean(values)
    flat_y, flat_p = targets.ravel() > 0.5, probs.ravel()
    both = flat_y.any() and (~flat_y).any()
    scores["micro_roc_auc"] = roc_auc(flat_y, flat_p) if both else float("nan")
    scores["micro_average_precision"] = (
        average_precision(flat_y, flat_p) if flat_y.any() else float("nan")
    )
    scores["weighted_log_loss"] = weighted_log_loss(targets, probs, weights)
    return scores


def any_inconsistency(probs: np.ndarray, labels: Sequence[str], any_label: str | None) -> float:
    """The share of images whose `any` probability is below one of their subtypes' (a
    prediction that contradicts any = max(subtypes)); NaN without an `any` label."""
    if any_label is None or any_label not in labels or len(probs) == 0:
        return float("nan")
    j = list(labels).index(any_label)
    others = np.delete(np.asarray(probs), j, axis=1)
    if others.shape[1] == 0:
        return float("nan")
    return float((probs[:, j] + 1e-6 < others.max(axis=1)).mean())


def enforce_any(probs: np.ndarray, labels: Sequence[str], any_label: str | None) -> np.ndarray:
    """`probs` with `any` raised to the largest subtype probability where it is below it."""
    if any_label is None or any_label not in labels:
        return probs
    probs = np.array(probs, dtype=np.float64, copy=True)
    j = list(labels).index(any_label)
    others = np.delete(probs, j, axis=1)
    if others.shape[1]:
        probs[:, j] = np.maximum(probs[:, j], others.max(axis=1))
    return probs


def cooccurrence(targets: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Images positive for both label i and label j (the diagonal: for label i)."""
    y = (np.asarray(targets) > 0.5).astype(np.int64)
    return y.T @ y


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(arr[~np.isnan(arr)].mean()) if np.any(~np.isnan(arr)) else float("nan")
