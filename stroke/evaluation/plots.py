"""Every figure of stroke: confusion matrices, ROC and PR curves, reliability diagrams.

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

DPI = 110


def _curve_classes(class_names: Sequence[str]) -> list[int]:
    """Classes that get a curve: the positive class of a binary task, else every class."""
    return [1] if len(class_names) == 2 else list(range(len(class_names)))


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
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
