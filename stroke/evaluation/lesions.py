"""Volume-level lesion metrics, the ISLES way: Dice, lesion-wise F1, lesion count and volume.

A lesion is a connected component of one class's voxels (26-connectivity in 3-D, as the
ISLES 2022 evaluation's cc3d). A true lesion is detected when any predicted voxel of its
class touches it; a predicted component touching no true lesion is a false positive.
`lesion F1 = TP / (TP + (FP + FN) / 2)`. Volumes are in millilitres from the voxel
spacing. Undefined values (Dice of a class absent from both volumes, lesion F1 without
any lesion on either side) are NaN, left out of means and shown as undefined in reports,
as nnU-Net's evaluation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: the per-class values `volume_scores` gives, in report order
VOLUME_METRICS = (
    "dice",
    "lesion_f1",
    "lesion_count_difference",
    "volume_true_ml",
    "volume_pred_ml",
    "absolute_volume_difference_ml",
)


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """The volume of one voxel in mL (spacing in mm; 1 mL = 1000 mm³)."""
    return float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0


def _structure(ndim: int) -> np.ndarray:
    """Full connectivity: 26 neighbours in 3-D, 8 in 2-D."""
    return ndimage.generate_binary_structure(ndim, ndim)


def connected_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The connected components of a binary mask (labels 1..n) and their count n."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=_structure(mask.ndim))
    return labels, int(count)


def dice(true: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two binary masks; NaN when both are empty."""
    true, pred = np.asarray(true, dtype=bool), np.asarray(pred, dtype=bool)
    total = int(true.sum()) + int(pred.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(true, pred).sum()) / total


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise detection of one class in one volume."""

    true_lesions: int
    pred_lesions: int
    detected: int  # true lesions touched by the prediction
    false_positive: int  # predicted components touching no true lesion

    @property
    def missed(self) -> int:
        return self.true_lesions - self.detected

    @property
    def f1(self) -> float:
        """TP / (TP + (FP + FN) / 2); NaN without a lesion on either side."""
        denominator = self.detected + (self.false_positive + self.missed) / 2
        return float("nan") if denominator == 0 else self.detected / denominator


def lesion_counts(true: np.ndarray, pred: np.ndarray) -> LesionCounts:
    """Match the connected lesions of two binary masks by overlap."""
    true, pred = np.asarray(true, dtype=bool), np.asarray(pred, dtype=bool)
    true_labels, n_true = connected_lesions(true)
    pred_labels, n_pred = connected_lesions(pred)
    detected = len(np.unique(true_labels[pred & (true_labels > 0)]))
    false_positive = n_pred - len(np.unique(pred_labels[true & (pred_labels > 0)]))
    return LesionCounts(n_true, n_pred, detected, false_positive)


def volume_scores(
    true: np.ndarray, pred: np.ndarray, lesion_classes: Sequence[str], spacing: Sequence[float]
) -> dict[str, float]:
    """Every value of `VOLUME_METRICS` for each lesion class (`dice/hemorrhage`...) and for
    any lesion (`dice/any`), from label volumes of class indices (0 background, k the k-th
    lesion class)."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"label volumes differ in shape: {true.shape} vs {pred.shape}")
    voxel_ml = voxel_volume_ml(spacing)
    scores: dict[str, float] = {}
    parts = [(name, k) for k, name in enumerate(lesion_classes, start=1)]
    if len(lesion_classes) > 1:
        parts.append(("any", None))
    for name, k in parts:
        t, p = (true > 0, pred > 0) if k is None else (true == k, pred == k)
        counts = lesion_counts(t, p)
        true_ml, pred_ml = float(t.sum()) * voxel_ml, float(p.sum()) * voxel_ml
        scores[f"dice/{name}"] = dice(t, p)
        scores[f"lesion_f1/{name}"] = counts.f1
        scores[f"lesion_count_difference/{name}"] = float(counts.pred_lesions - counts.true_lesions)
        scores[f"volume_true_ml/{name}"] = true_ml
        scores[f"volume_pred_ml/{name}"] = pred_ml
        scores[f"absolute_volume_difference_ml/{name}"] = abs(pred_ml - true_ml)
    return scores


def remove_small_lesions(
    labels: np.ndarray, min_voxels: int | Sequence[int], num_classes: int | None = None
) -> np.ndarray:
    """A label volume without the components of each class smaller than `min_voxels` (one
    value for every class, or one per lesion class), which become background."""
    labels = np.asarray(labels)
    classes = int(labels.max()) if num_classes is None else num_classes
    limits = (
        [int(min_voxels)] * classes if np.isscalar(min_voxels) else [int(v) for v in min_voxels]
    )
    out = labels.copy()
    for k, limit in enumerate(limits, start=1):
        if limit <= 1:
            continue
        components, count = connected_lesions(labels == k)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < limit)
        small = small[small > 0]
        out[np.isin(components, small)] = 0
    return out


def bland_altman(true_ml: np.ndarray, pred_ml: np.ndarray) -> dict[str, float]:
    """Agreement of predicted and true volumes: mean difference (bias, predicted minus
    true) and the 95% limits of agreement (bias ± 1.96 SD of the differences)."""
    true_ml, pred_ml = np.asarray(true_ml, dtype=float), np.asarray(pred_ml, dtype=float)
    if true_ml.size == 0:
        nan = float("nan")
        return {"bias_ml": nan, "lower_limit_ml": nan, "upper_limit_ml": nan, "n": 0}
    diff = pred_ml - true_ml
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else float("nan")
    return {
        "bias_ml": bias,
        "lower_limit_ml": bias - 1.96 * sd,
        "upper_limit_ml": bias + 1.96 * sd,
        "n": int(diff.size),
    }
