"""Segmentation metrics: Dice and IoU per lesion class and macro, lesion-level detection.

The same vocabulary as classification (`stroke.evaluation.metrics`): `dice` is the macro
mean over the lesion classes (background excluded), `dice/<class>` one class; `iou`
likewise; `lesion_sensitivity` the share of true lesions (connected components) that the
prediction touches, `fp_lesions_per_image` the predicted lesions that touch no true one,
per image. `lesion_*` without a class count lesions of any class against lesions of any
class; `lesion_*/<class>` within one class. During training they are logged under the
split (`val/dice`, `test/iou/infarct`).

Dice and IoU are global over a split: the pixel counts (true positives, false positives,
false negatives) of all its images are summed first, as TorchMetrics' `DiceScore` does
with `aggregation_level="global"`, so a slice without a lesion does not count as a
perfect or a failed one. A class absent from both truth and prediction is undefined (NaN)
and left out of the macro mean.

`METRICS` is the vocabulary, each name with the one function computing it from summed
counts. The report (and its patient bootstrap) sums `image_counts` over any set of
images; training sums the same counts over an epoch in `SegmentationCounts` (across
batches and DDP processes); both then call `scores_from_counts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torchmetrics import Metric

#: 8-connectivity: pixels touching at a corner belong to one lesion.
_CONNECTIVITY = np.ones((3, 3), dtype=bool)
#: Per-image counts the report sums over any subset of images (e.g. a bootstrap resample).
COUNT_FIELDS = ("tp", "fp", "fn", "lesions", "found", "fp_lesions")


def pixel_counts(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """(3, num_classes) true positive, false positive and false negative pixels per class."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    joint = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    matrix = joint.reshape(num_classes, num_classes)  # rows: true class
    tp = np.diag(matrix)
    return np.stack([tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp])


def lesion_counts(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    """(true lesions, those the prediction touches, predicted lesions touching no true one).

    Lesions are the 8-connected components of the boolean masks.
    """
    true_labels, n_true = ndimage.label(true, structure=_CONNECTIVITY)
    pred_labels, n_pred = ndimage.label(pred, structure=_CONNECTIVITY)
    found = np.count_nonzero(np.bincount(true_labels[pred], minlength=n_true + 1)[1:])
    hit = np.count_nonzero(np.bincount(pred_labels[true], minlength=n_pred + 1)[1:])
    return n_true, int(found), n_pred - int(hit)


def image_counts(pred: np.ndarray, true: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Every count of one image (H x W class indices), per class; index 0 of the lesion
    counts is lesions of any class."""
    counts = dict(zip(("tp", "fp", "fn"), pixel_counts(pred, true, num_classes), strict=True))
    lesions = np.zeros((3, num_classes), dtype=np.int64)
    lesions[:, 0] = lesion_counts(pred > 0, true > 0)
    for k in range(1, num_classes):
        lesions[:, k] = lesion_counts(pred == k, true == k)
    counts.update(zip(("lesions", "found", "fp_lesions"), lesions, strict=True))
    return counts


@dataclass(frozen=True)
class SegmentationMetric:
    """One metric: its name in every log and file, its report row, and its function of the
    summed counts and the number of images, a value per channel. Channel 0 is the
    background for pixel metrics (never shown) and lesions of any class for lesion metrics;
    `<name>` alone is the macro mean over lesion classes when `macro`, else channel 0."""

    name: str
    label: str
    macro: bool
    compute: Callable[[Mapping[str, np.ndarray], int], np.ndarray]


def _per_image(values: np.ndarray, n_images: int) -> np.ndarray:
    return values / n_images if n_images else values * np.nan


#: Every segmentation metric, in the report's reading order; nothing else lists them.
METRICS = (
    SegmentationMetric(
        "dice",
        "Dice (macro over lesion classes)",
        True,
        lambda c, n: _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
    ),
    SegmentationMetric(
        "iou",
        "IoU (macro over lesion classes)",
        True,
        lambda c, n: _ratio(c["tp"], c["tp"] + c["fp"] + c["fn"]),
    ),
    SegmentationMetric(
        "lesion_sensitivity",
        "lesion-level sensitivity (lesions found / present)",
        False,
        lambda c, n: _ratio(c["found"], c["lesions"]),
    ),
    SegmentationMetric(
        "fp_lesions_per_image",
        "false-positive lesions per image",
        False,
        lambda c, n: _per_image(c["fp_lesions"], n),
    ),
)


def scores_from_counts(
    counts: Mapping[str, np.ndarray], n_images: int, lesion_classes: Sequence[str]
) -> dict[str, float]:
    """`<metric>` and `<metric>/<class>` of every metric of `METRICS` from summed counts."""
    as_float = {k: np.asarray(counts[k], dtype=float) for k in COUNT_FIELDS}
    scores = {}
    for metric in METRICS:
        values = metric.compute(as_float, n_images)
        scores[metric.name] = _nanmean(values[1:]) if metric.macro else float(values[0])
        for cls, value in zip(lesion_classes, values[1:], strict=True):
            scores[f"{metric.name}/{cls}"] = float(value)
    return scores


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


class SegmentationCounts(Metric):
    """Every count of `COUNT_FIELDS` summed over an epoch's images, and the images.

    Counted on the CPU image by image (`image_counts`, the report's), summed across
    batches and DDP processes; `scores_from_counts` turns them into the metrics.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for name in COUNT_FIELDS:
            self.add_state(name, torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds and target: B x H x W class indices."""
        pairs = zip(preds.cpu().numpy(), target.cpu().numpy(), strict=True)
        counts = [image_counts(pred, true, self.num_classes) for pred, true in pairs]
        for name in COUNT_FIELDS:
            summed = np.sum([c[name] for c in counts], axis=0, dtype=np.int64)
            getattr(self, name).add_(torch.as_tensor(summed, device=self.device))
        self.images += len(preds)

    def compute(self) -> tuple[dict[str, np.ndarray], int]:
        """(the summed counts, the number of images), as `scores_from_counts` takes them."""
        return {k: getattr(self, k).cpu().numpy() for k in COUNT_FIELDS}, int(self.images)


def epoch_scores(
    counts: Mapping[str, np.ndarray], n_images: int, split: str, lesion_classes: Sequence[str]
) -> dict[str, float]:
    """`<split>/<metric>` and `<split>/<metric>/<class>` of every metric of `METRICS`."""
    scores = scores_from_counts(counts, n_images, lesion_classes)
    return {f"{split}/{name}": value for name, value in scores.items()}
