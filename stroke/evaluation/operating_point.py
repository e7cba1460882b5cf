"""Decision thresholds chosen on the validation split: Youden's J or a target sensitivity.

A threshold is chosen where it may honestly be chosen (validation) and then applied,
unchanged, to the test split. The decision is "class c" when P(c) >= threshold, one
class against the rest: for a binary task that is the positive class (index 1, the
datamodule puts the negative class first); for a multi-class task every non-negative
class gets its own one-vs-rest operating point, and the headline prediction stays the
argmax.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_curve

from stroke.errors import ConfigError

METHODS = ("youden", "sensitivity")


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on P(class) and what it achieved on the split it was chosen on."""

    class_name: str
    method: str
    threshold: float
    sensitivity: float
    specificity: float
    target_sensitivity: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain values for metrics.json."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def choose_threshold(
    y_positive: np.ndarray,
    score: np.ndarray,
    method: str = "youden",
    target_sensitivity: float = 0.95,
    class_name: str = "positive",
) -> OperatingPoint:
    """The threshold on `score` (decide positive when score >= threshold) by `method`.

    `youden` maximizes sensitivity + specificity - 1; `sensitivity` takes the highest
    threshold whose sensitivity reaches `target_sensitivity`, i.e. the most specific one
    that still finds that share of the positives.
    """
    if method not in METHODS:
        raise ConfigError(f"evaluation.operating_point={method!r}; expected one of {METHODS}")
    if not 0 < target_sensitivity <= 1:
        raise ConfigError(
            f"evaluation.target_sensitivity={target_sensitivity!r}; expected a value in (0, 1]"
        )
    y_positive = np.asarray(y_positive, dtype=bool)
    if y_positive.all() or not y_positive.any():
        raise ValueError(
            f"cannot choose a threshold for {class_name!r}: the split has "
            f"{int(y_positive.sum())} positive and {int((~y_positive).sum())} negative images; "
            "it needs both"
        )
    fpr, tpr, thresholds = roc_curve(y_positive, score, drop_intermediate=False)
    # roc_curve's first threshold is +inf (nothing positive): never a useful choice
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if method == "youden":
        best = int(np.argmax(tpr - fpr))
    else:
        # tpr grows as the threshold falls: the first index reaching the target is the
        # highest threshold that does
        best = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    return OperatingPoint(
        class_name=class_name,
        method=method,
        threshold=float(thresholds[best]),
        sensitivity=float(tpr[best]),
        specificity=float(1 - fpr[best]),
        target_sensitivity=float(target_sensitivity) if method == "sensitivity" else None,
    )
