"""The metrics logged every validation and test epoch, under the report's names.

TorchMetrics accumulates them across batches and DDP processes. Keys follow the one
vocabulary of `stroke.evaluation.metrics`: `<split>/<metric>` for the macro mean (or the
single value) and `<split>/<metric>/<class>` for one class, e.g. `val/f1` and
`test/recall/ischemic`, the same names as in the evaluation report's metrics.json.

Its conventions too (stroke.evaluation.metrics): recall and ROC AUC of a class without
images in the split (ROC AUC also when every image is of that class) are undefined, NaN
here and null in metrics.json with the reason (`undefined_metrics`), never TorchMetrics'
0; macro means are over the classes the split holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassStatScores,
)

#: Metrics also logged per class (as `<metric>/<class>`).
PER_CLASS = ("precision", "recall", "f1")
_PER_CLASS_SUFFIX = "_per_class"


def epoch_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, per-class precision/recall/F1/ROC AUC and each class's image count."""
    per_class = {
        "precision": MulticlassPrecision,
        "recall": MulticlassRecall,
        "f1": MulticlassF1Score,
        "roc_auc": MulticlassAUROC,
    }
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        # tp, fp, tn, fn, support per class: which per-class values are defined
        "stats": MulticlassStatScores(num_classes, average=None),
    }
    for name, cls in per_class.items():
        metrics[name + _PER_CLASS_SUFFIX] = cls(num_classes, average=None)
    return MetricCollection(metrics)


def flatten_metrics(
    values: dict[str, torch.Tensor], split: str, class_names: Sequence[str]
) -> dict[str, float]:
    """`<split>/<metric>` (macro over the classes present) and `<split>/<metric>/<class>`;
    undefined values are NaN (see the module docstring)."""
    support = class_support(values)
    total = sum(support)
    flat = {f"{split}/accuracy": float(values["accuracy"]) if total else math.nan}
    for name in (*PER_CLASS, "roc_auc"):
        per_class = values[name + _PER_CLASS_SUFFIX].tolist()
        kept = []
        for cls, value, n in zip(class_names, per_class, support, strict=True):
            if _undefined(name, n, total):
                value = math.nan
            flat[f"{split}/{name}/{cls}"] = float(value)
            if n > 0 and not math.isnan(value):
                kept.append(value)
        flat[f"{split}/{name}"] = sum(kept) / len(kept) if kept else math.nan
    # balanced accuracy is the macro recall
    flat[f"{split}/balanced_accuracy"] = flat[f"{split}/recall"]
    return flat


def class_support(values: dict[str, torch.Tensor]) -> list[int]:
    """Images of each class in the split, from `epoch_metrics(...).compute()`."""
    return [int(n) for n in values["stats"][:, 4].tolist()]


def _undefined(name: str, support: int, total: int) -> bool:
    if name == "recall":
        return support == 0
    if name == "roc_auc":
        return support == 0 or support == total
    return total == 0


def undefined_metrics(
    values: dict[str, float], split: str, class_names: Sequence[str], support: Sequence[int]
) -> dict[str, str]:
    """`{key: why}` for every NaN of `flatten_metrics`, for metrics.json and the log."""
    total = sum(support)
    reasons = {}
    for key, value in values.items():
        if not math.isnan(value):
            continue
        cls = key.rsplit("/", 1)[-1]
        if cls in class_names:
            n = support[list(class_names).index(cls)]
            reasons[key] = (
                f"no {split} image of class {cls}" if n == 0
                else f"every {split} image is of class {cls}: no negative to rank"
            )  # fmt: skip
        else:
            reasons[key] = (
                f"the {split} split holds no image" if total == 0
                else f"undefined for every class of the {split} split"
            )  # fmt: skip
    return reasons
