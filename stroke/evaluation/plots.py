"""Every figure of stroke: confusion matrices, ROC and PR curves, reliability diagrams,
lesion outlines and volume agreement.

For the evaluation report (PNG files) and TensorBoard (figures), so both show the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from stroke.evaluation.metrics import (  # noqa: E402
    average_precision,
    expected_calibration_error,
    reliability_bins,
    roc_auc,
)
from stroke.evaluation.overlay import truth_and_prediction  # noqa: E402
from stroke.io import atomic_write_with  # noqa: E402

DPI = 110


def _curve_classes(class_names: Sequence[str]) -> list[int]:
    """Classes that get a curve: the positive class of a binary task, else every class."""
    return [1] if len(class_names) == 2 else list(range(len(class_names)))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    try:
        kind = path.suffix.lstrip(".") or "png"
        atomic_write_with(path, lambda fh: fig.savefig(fh, format=kind, dpi=DPI))
    finally:
        plt.close(fig)
    return path


def confusion_matrix_figure(
    matrix: np.ndarray, class_names: Sequence[str], title: str, normalized: bool = False
) -> plt.Figure:
    """A confusion matrix: counts (or row fractions), shaded by the fraction of each true class.

    Shading by row fraction keeps a rare class's errors visible beside a common class's
    hits; the same figure goes to TensorBoard each epoch and to the evaluation report.
    """
    counts = np.asarray(matrix, dtype=float)
    fractions = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    size = 1.6 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            text = f"{fractions[i, j]:.2f}" if normalized else f"{int(counts[i, j])}"
            color = "white" if fractions[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, normalized: bool, title: str
) -> Path:
    """`confusion_matrix_figure` saved as a PNG file."""
    return _save(confusion_matrix_figure(matrix, class_names, title, normalized), path)


def plot_roc(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str,
    operating_points: Sequence[tuple[int, float, float]] = (),
) -> Path:
    """One-vs-rest ROC curves with their AUC; `operating_points` are (class, 1-spec, sens)."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    colors = {}
    for k in _curve_classes(class_names):
        positive = np.asarray(y_true) == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        (line,) = ax.plot(
            fpr, tpr, label=f"{class_names[k]} (AUC {roc_auc(positive, probs[:, k]):.3f})"
        )
        colors[k] = line.get_color()
    for k, false_pos_rate, sensitivity in operating_points:
        ax.plot(
            false_pos_rate,
            sensitivity,
            "o",
            markersize=7,
            color=colors.get(k, "black"),
            markeredgecolor="black",
            label=f"{class_names[k]} operating point (validation threshold)",
        )
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    _label_unit_square(
        ax, "1 - specificity (false positive rate)", "sensitivity (true positive rate)", title
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_label_roc(
    targets: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    path: Path,
    title: str,
    operating_points: Sequence[tuple[int, float, float]] = (),
) -> Path:
    """Multi-label ROC curves, one per label (column) with its AUC; `operating_points` are
    (label, 1 - specificity, sensitivity) at the thresholds chosen on validation."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    colors = {}
    for k, label in enumerate(labels):
        positive = np.asarray(targets)[:, k] > 0.5
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, k])
        (line,) = ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc(positive, probs[:, k]):.3f})")
        colors[k] = line.get_color()
    for k, false_pos_rate, sensitivity in operating_points:
        if k in colors:
            ax.plot(false_pos_rate, sensitivity, "o", markersize=6, color=colors[k],
                    markeredgecolor="black")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    _label_unit_square(
        ax, "1 - specificity (false positive rate)", "sensitivity (true positive rate)", title
    )
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def _label_unit_square(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title and 0-1 limits (with a margin for curves on the edge) of a rate plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_title(title)


def plot_precision_recall(
    y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: Path, title: str
) -> Path:
    """One-vs-rest precision-recall curves with their average precision and prevalence."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for k in _curve_classes(class_names):
        positive = np.asarray(y_true) == k
        if not positive.any():
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, k])
        line = ax.step(
            recall,
            precision,
            where="post",
            label=f"{class_names[k]} (AP {average_precision(positive, probs[:, k]):.3f})",
        )
        # a classifier that guesses reaches the prevalence: the baseline to beat
        ax.axhline(positive.mean(), linestyle=":", linewidth=0.8, color=line[0].get_color())
    _label_unit_square(ax, "recall (sensitivity)", "precision (positive predictive value)", title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_reliability(
    y_true: np.ndarray, probs: np.ndarray, path: Path, title: str, n_bins: int = 10
) -> Path:
    """Reliability diagram (accuracy vs confidence per bin) with the ECE, and bin counts."""
    mean_conf, accuracy, counts = reliability_bins(y_true, probs, n_bins)
    ece = expected_calibration_error(y_true, probs, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, (ax, ax_counts) = plt.subplots(
        2, 1, figsize=(5.2, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = counts > 0
    ax.bar(
        centres[filled],
        accuracy[filled],
        width=1 / n_bins,
        edgecolor="black",
        alpha=0.8,
        label="accuracy",
    )
    ax.plot(
        mean_conf[filled],
        accuracy[filled],
        "o",
        color="black",
        markersize=3,
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}  (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax_counts.bar(centres, counts, width=1 / n_bins, edgecolor="black", color="grey")
    ax_counts.set_xlabel("confidence (probability of the predicted class)")
    ax_counts.set_ylabel("images")
    ax_counts.set_xlim(0, 1)
    return _save(fig, path)


# -- segmentation ------------------------------------------------------------------------
def lesion_outline_figure(
    images: Sequence[np.ndarray],
    true_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray],
    titles: Sequence[str],
    title: str,
    columns: int = 4,
) -> plt.Figure:
    """Slices with the true lesion outline (green) and the predicted one (the class colour).

    Each epoch in TensorBoard and as the report's gallery of the worst slices.
    """

    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.7 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, true, pred, label in zip(
        axes.ravel(), images, true_masks, pred_masks, titles, strict=False
    ):
        zoom = max(1, 192 // max(image.shape[:2]))  # outlines one pixel wide at display size
        big = [np.kron(a, np.ones((zoom, zoom), a.dtype)) for a in (true, pred)]
        shown = np.kron(
            image[..., 0] if image.ndim == 3 else image, np.ones((zoom, zoom), np.uint8)
        )
        ax.imshow(truth_and_prediction(shown, *big))
        ax.set_title(label, fontsize=8)
    fig.suptitle(f"{title}  (green: true outline; red/cyan: predicted)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_slice_gallery(
    images: Sequence[np.ndarray],
    true_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """`lesion_outline_figure` saved as a PNG file."""
    return _save(lesion_outline_figure(images, true_masks, pred_masks, titles, title), path)


def plot_volume_agreement(
    true: np.ndarray, predicted: np.ndarray, unit: str, path: Path, title: str
) -> Path:
    """True against predicted lesion volume per patient, and their Bland-Altman plot.

    Left: each patient a point, the identity line for perfect agreement. Right: the
    difference (predicted - true) against the mean of the two, with the mean difference
    (bias) and its 95% limits of agreement (bias +- 1.96 SD).
    """
    true, predicted = np.asarray(true, dtype=float), np.asarray(predicted, dtype=float)
    fig, (ax, ax_ba) = plt.subplots(1, 2, figsize=(10, 4.6))
    top = max(float(np.max(true, initial=0)), float(np.max(predicted, initial=0))) * 1.05 or 1.0
    ax.plot([0, top], [0, top], "--", color="grey", linewidth=0.8, label="perfect agreement")
    ax.scatter(true, predicted, s=18, alpha=0.8, edgecolor="black", linewidth=0.4)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"true volume ({unit})")
    ax.set_ylabel(f"predicted volume ({unit})")
    ax.set_title(f"{title}: {len(true)} patients")
    ax.legend(loc="upper left", fontsize=8)
    mean, difference = (true + predicted) / 2, predicted - true
    bias = float(np.mean(difference)) if len(difference) else 0.0
    spread = 1.96 * float(np.std(difference, ddof=1)) if len(difference) > 1 else 0.0
    ax_ba.scatter(mean, difference, s=18, alpha=0.8, edgecolor="black", linewidth=0.4)
    ax_ba.axhline(bias, color="black", label=f"bias {bias:.3g}")
    ax_ba.axhline(bias - spread, color="grey", linestyle="--", linewidth=0.8)
    ax_ba.axhline(
        bias + spread,
        color="grey",
        linestyle="--",
        linewidth=0.8,
        label=f"95% limits of agreement +-{spread:.3g}",
    )
    ax_ba.set_xlabel(f"mean of true and predicted ({unit})")
    ax_ba.set_ylabel(f"predicted - true ({unit})")
    ax_ba.set_title("Bland-Altman")
    ax_ba.legend(loc="best", fontsize=8)
    return _save(fig, path)
