"""Classification metrics (TorchMetrics) and the confusion-matrix figure."""

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


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, macro precision/recall/F1/AUROC, and per-class precision/recall/F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "auroc": MulticlassAUROC(num_classes, average="macro"),
            "precision_per_class": MulticlassPrecision(num_classes, average=None),
            "recall_per_class": MulticlassRecall(num_classes, average=None),
            "f1_per_class": MulticlassF1Score(num_classes, average=None),
        }
    )


def flatten_metrics(
    values: dict[str, torch.Tensor], prefix: str, class_names: Sequence[str]
) -> dict[str, float]:
    """Scalars named `<prefix>/<metric>`; per-class vectors become `<prefix>/<metric>_<class>`."""
    flat = {}
    for name, value in values.items():
        if value.ndim == 0:
            flat[f"{prefix}/{name}"] = float(value)
        else:
            base = name.removesuffix("_per_class")
            for cls, v in zip(class_names, value.tolist(), strict=True):
                flat[f"{prefix}/{base}_{cls}"] = float(v)
    return flat


def confusion_matrix_figure(matrix: torch.Tensor, class_names: Sequence[str], title: str):
    """A matplotlib figure of a confusion matrix: counts, with row-normalized shading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = matrix.detach().cpu().numpy()
    row_sums = counts.sum(axis=1, keepdims=True)
    normalized = counts / row_sums.clip(min=1)
    size = 1.2 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            color = "white" if normalized[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig
