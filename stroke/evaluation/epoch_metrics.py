"""The metrics logged every validation and test epoch, under the report's names.

TorchMetrics accumulates them across batches and DDP processes. Keys follow the one
vocabulary of `stroke.evaluation.metrics`: `<split>/<metric>` for the macro mean (or the
single value) and `<split>/<metric>/<class>` for one class, e.g. `val/f1` and
`test/recall/ischemic`, the same names as in the evaluation report's metrics.json.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

#: Metrics also logged per class (as `<metric>/<class>`).
PER_CLASS = ("precision", "recall", "f1")
_PER_CLASS_SUFFIX = "_per_class"


def epoch_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy, macro precision/recall/F1/ROC AUC, and per-class P/R/F1."""
    per_class = {
        "precision": MulticlassPrecision,
        "recall": MulticlassRecall,
        "f1": MulticlassF1Score,
    }
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        # balanced accuracy is the macro recall
        "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
        "roc_auc": MulticlassAUROC(num_classes, average="macro"),
    }
    for name, cls in per_class.items():
        metrics[name] = cls(num_classes, average="macro")
        metrics[name + _PER_CLASS_SUFFIX] = cls(num_classes, average=None)
    return MetricCollection(metrics)


def flatten_metrics(
    values: dict[str, torch.Tensor], split: str, class_names: Sequence[str]
) -> dict[str, float]:
    """`<split>/<metric>` scalars; per-class vectors become `<split>/<metric>/<class>`."""
    flat = {}
    for name, value in values.items():
        if value.ndim == 0:
            flat[f"{split}/{name}"] = float(value)
        else:
            base = name.removesuffix(_PER_CLASS_SUFFIX)
            for cls, v in zip(class_names, value.tolist(), strict=True):
                flat[f"{split}/{base}/{cls}"] = float(v)
    return flat
