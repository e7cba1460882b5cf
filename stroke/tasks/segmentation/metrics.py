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
and left out of the macro mean. The NumPy functions here (the evaluation report, its
patient bootstrap) and the TorchMetrics ones (training) give the same values
(tests/test_segmentation_metrics.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.segmentation import DiceScore

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


def scores_from_counts(
    counts: dict[str, np.ndarray], n_images: int, lesion_classes: Sequence[str]
) -> dict[str, float]:
    """Dice, IoU, lesion sensitivity and FP lesions per image from summed counts."""
    tp, fp, fn = (np.asarray(counts[k], dtype=float)[1:] for k in ("tp", "fp", "fn"))
    lesions, found, fp_lesions = (
        np.asarray(counts[k], dtype=float) for k in ("lesions", "found", "fp_lesions")
    )
    per_class = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "lesion_sensitivity": _ratio(found[1:], lesions[1:]),
        "fp_lesions_per_image": fp_lesions[1:] / n_images if n_images else fp_lesions[1:] * np.nan,
    }
    scores = {
        "dice": _nanmean(per_class["dice"]),
        "iou": _nanmean(per_class["iou"]),
        "lesion_sensitivity": float(_ratio(found[:1], lesions[:1])[0]),
        "fp_lesions_per_image": float(fp_lesions[0] / n_images) if n_images else float("nan"),
    }
    for name, values in per_class.items():
        for cls, value in zip(lesion_classes, values, strict=True):
            scores[f"{name}/{cls}"] = float(value)
    return scores


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


class LesionDetection(Metric):
    """Lesion-level sensitivity and false-positive lesions per image (connected components).

    Counted on the CPU image by image (`lesion_counts`), summed across batches and DDP
    processes. Index 0 holds lesions of any class, index k lesion class k.
    """

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        for name in ("lesions", "found", "fp_lesions"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds and target: B x H x W class indices."""
        for pred, true in zip(preds.cpu().numpy(), target.cpu().numpy(), strict=True):
            counts = image_counts(pred, true, self.num_classes)
            for name in ("lesions", "found", "fp_lesions"):
                getattr(self, name).add_(torch.as_tensor(counts[name], device=self.device))
        self.images += len(preds)

    def compute(self) -> dict[str, torch.Tensor]:
        images = self.images.clamp(min=1).float()
        return {
            "lesion_sensitivity": self.found.float() / self.lesions.float(),
            "fp_lesions_per_image": self.fp_lesions.float() / images,
        }


def segmentation_metrics(num_classes: int) -> MetricCollection:
    """Dice and IoU per class (global), lesion detection; `num_classes` counts background."""
    return MetricCollection(
        {
            "dice": DiceScore(
                num_classes,
                include_background=False,
                average="none",
                aggregation_level="global",
                input_format="index",
            ),
            "iou": MulticlassJaccardIndex(num_classes, average="none", validate_args=False),
            "lesions": LesionDetection(num_classes),
        },
        compute_groups=False,
    )


def flatten_segmentation(
    values: dict[str, torch.Tensor], split: str, lesion_classes: Sequence[str]
) -> dict[str, float]:
    """`<split>/<metric>` (macro over lesion classes) and `<split>/<metric>/<class>`."""
    per_class = {
        "dice": values["dice"].float(),
        "iou": values["iou"].float()[1:],  # the Jaccard index counts background as class 0
        "lesion_sensitivity": values["lesion_sensitivity"].float()[1:],
        "fp_lesions_per_image": values["fp_lesions_per_image"].float()[1:],
    }
    flat = {
        f"{split}/dice": _nanmean(per_class["dice"].cpu().numpy()),
        f"{split}/iou": _nanmean(per_class["iou"].cpu().numpy()),
        f"{split}/lesion_sensitivity": float(values["lesion_sensitivity"][0]),
        f"{split}/fp_lesions_per_image": float(values["fp_lesions_per_image"][0]),
    }
    for name, vector in per_class.items():
        for cls, value in zip(lesion_classes, vector.tolist(), strict=True):
            flat[f"{split}/{name}/{cls}"] = float(value)
    return flat
