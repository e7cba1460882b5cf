"""The multi-label report (stroke-eval, and the end of stroke-train): slice and series level.

Per label: ROC AUC, average precision, and sensitivity/specificity at a threshold chosen on
the validation split (`evaluation.operating_point`: youden, or the most specific one that
reaches `evaluation.target_sensitivity`), with macro and micro means and the RSNA weighted
log loss; every value with a patient-bootstrap interval. The same at the series level
(a series: its `series_id`, else its patient), where a series is positive for a label when
any of its slices is, scored by the max and by the mean of its slices' probabilities. Beside
them: how often the predicted `any` is below a subtype's (any = max(subtypes) violated),
the label co-occurrence table, and the per-label ROC curves.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stroke.evaluation.evaluate import EvaluationConfig
from stroke.evaluation.metrics import bootstrap_intervals, with_intervals
from stroke.evaluation.operating_point import choose_threshold
from stroke.evaluation.plots import plot_label_roc
from stroke.evaluation.report import format_estimate
from stroke.io import atomic_write_json, atomic_write_text, atomic_writer
from stroke.tasks.multilabel.metrics import (
    OVERALL_METRICS,
    PER_LABEL_METRICS,
    any_inconsistency,
    cooccurrence,
    enforce_any,
    label_weights,
    multilabel_scores,
)

#: how a series' score is made from its slices' probabilities
SERIES_AGGREGATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max": lambda p: p.max(axis=0),
    "mean": lambda p: p.mean(axis=0),
}


@dataclass
class LabelPredictions:
    """A split's sigmoid probabilities and 0/1 targets (images x labels), with who is who."""

    split: str
    paths: list[str]
    patient_ids: list[str]
    series_ids: list[str]
    targets: np.ndarray
    probs: np.ndarray


def predict_labels(net: torch.nn.Module, datamodule, split: str, device) -> LabelPredictions:
    """Run `net` over a split of a set-up multi-label datamodule, in file order."""
    dataset = datamodule.datasets[split]
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[split]()
    was_training = net.training
    net.eval().to(device)
    probs, targets = [], []
    with torch.no_grad():
        for images, labels in loader:
            probs.append(torch.sigmoid(net(images.to(device)).float()).cpu())
            targets.append(labels.float())
    net.train(was_training)
    width = len(datamodule.class_names)
    samples = dataset.samples
    return LabelPredictions(
        split=split,
        paths=[s.path.as_posix() for s in samples],
        patient_ids=[s.patient_id for s in samples],
        series_ids=[s.series_id or s.patient_id for s in samples],
        targets=torch.cat(targets).numpy() if targets else np.zeros((0, width)),
        probs=torch.cat(probs).numpy() if probs else np.zeros((0, width)),
    )


def series_level(
    predictions: LabelPredictions, aggregate: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(targets, probs, patient of each series): a series is positive when a slice is."""
    rows: dict[str, list[int]] = {}
    for i, series in enumerate(predictions.series_ids):
        rows.setdefault(series, []).append(i)
    targets = np.stack([predictions.targets[r].max(axis=0) for r in rows.values()])
    probs = np.stack([aggregate(predictions.probs[r]) for r in rows.values()])
    patients = [predictions.patient_ids[r[0]] for r in rows.values()]
    return targets, probs, patients


def chosen_thresholds(
    val: LabelPredictions | None, labels: Sequence[str], config: EvaluationConfig
) -> tuple[list[float], dict[str, object]]:
    """A threshold per label, chosen on validation; 0.5 where validation cannot choose."""
    thresholds, chosen = [], {}
    for k, label in enumerate(labels):
        y = None if val is None or not len(val.targets) else val.targets[:, k] > 0.5
        if y is None or y.all() or not y.any():
            thresholds.append(0.5)
            chosen[label] = {"threshold": 0.5, "method": "default (validation lacks a class)"}
            continue
        point = choose_threshold(
            y, val.probs[:, k], config.operating_point, config.target_sensitivity, label
        )
        thresholds.append(point.threshold)
        chosen[label] = point.to_dict()
    return thresholds, chosen


def scored(
    targets: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[str],
    labels: Sequence[str],
    weights: np.ndarray,
    thresholds: Sequence[float],
    config: EvaluationConfig,
) -> dict[str, dict[str, object]]:
    """Every metric with its patient-bootstrap interval (`groups`: the patient of each row)."""

    def statistic(indices: np.ndarray) -> dict[str, float]:
        return multilabel_scores(targets[indices], probs[indices], labels, weights, thresholds)

    point = multilabel_scores(targets, probs, labels, weights, thresholds)
    intervals = bootstrap_intervals(
        statistic, len(targets), groups, config.n_boot, config.ci_level, config.seed
    )
    return with_intervals(point, intervals)


def evaluate_predictions(
    test: LabelPredictions,
    val: LabelPredictions | None,
    labels: Sequence[str],
    config: EvaluationConfig,
    settings: Mapping[str, Any],
) -> dict[str, object]:
    """metrics.json's content: slice and series level, consistency, co-occurrence."""
    any_label = settings.get("any_label")
    weights = label_weights(labels, settings.get("log_loss_weights"))
    inconsistent = any_inconsistency(test.probs, labels, any_label)
    if settings.get("enforce_any"):
        for split in (test, val):
            if split is not None:
                split.probs = enforce_any(split.probs, labels, any_label)
    thresholds, chosen = chosen_thresholds(val, labels, config)
    result: dict[str, object] = {
        "labels": list(labels),
        "images": len(test.targets),
        "series": len(set(test.series_ids)),
        "patients": len(set(test.patient_ids)),
        "thresholds": chosen,
        "slice_level": scored(
            test.targets, test.probs, test.patient_ids, labels, weights, thresholds, config
        ),  # fmt: skip
        "series_level": {},
        "any_consistency": {
            "any_label": any_label,
            "share_below_a_subtype": None if np.isnan(inconsistent) else inconsistent,
            "enforced": bool(settings.get("enforce_any")),
        },
        "cooccurrence": cooccurrence(test.targets, labels).tolist(),
        "log_loss_weights": dict(zip(labels, weights.tolist(), strict=True)),
    }
    for name, aggregate in SERIES_AGGREGATIONS.items():
        targets, probs, patients = series_level(test, aggregate)
        result["series_level"][name] = scored(
            targets, probs, patients, labels, weights, thresholds, config
        )
    return result


def write_report(
    out_dir: Path,
    result: Mapping[str, Any],
    test: LabelPredictions,
    context: Mapping[str, object],
) -> None:
    """metrics.json, report.md, predictions_test.csv and roc_curves.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = result["labels"]
    atomic_write_json(out_dir / "metrics.json", dict(result), indent=2)
    with atomic_writer(out_dir / "predictions_test.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "patient_id", "series_id"]
                        + [f"target_{name}" for name in labels]
                        + [f"prob_{name}" for name in labels])  # fmt: skip
        for i, path in enumerate(test.paths):
            writer.writerow([path, test.patient_ids[i], test.series_ids[i]]
                            + [int(v) for v in test.targets[i]]
                            + [f"{v:.6f}" for v in test.probs[i]])  # fmt: skip
    points = []
    slice_metrics = result["slice_level"]
    for k, label in enumerate(labels):
        sens = slice_metrics.get(f"sensitivity/{label}", {}).get("value")
        spec = slice_metrics.get(f"specificity/{label}", {}).get("value")
        if sens is not None and spec is not None:
            points.append((k, 1 - spec, sens))
    if len(test.targets):
        plot_label_roc(test.targets, test.probs, labels, out_dir / "roc_curves.png",
                       "test split, per label", points)  # fmt: skip
    atomic_write_text(out_dir / "report.md", _markdown(result, context))


def _markdown(result: Mapping[str, Any], context: Mapping[str, object]) -> str:
    labels = result["labels"]
    slice_m, series_m = result["slice_level"], result["series_level"]
    lines = ["# Multi-label evaluation", ""]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += [
        f"- test split: {result['images']} images, {result['series']} series, "
        f"{result['patients']} patients; intervals: patient bootstrap",
        "",
        "## Overall (slice level; series level by max and by mean of the slices)",
        "",
        "| metric | slice | series (max) | series (mean) |",
        "|---|---|---|---|",
    ]
    for name in (*OVERALL_METRICS, *PER_LABEL_METRICS):
        label = name if name in OVERALL_METRICS else f"{name} (macro)"
        row = [format_estimate(slice_m.get(name))]
        row += [format_estimate(series_m[agg].get(name)) for agg in SERIES_AGGREGATIONS]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "## Per label (slice level)", "",
              "| label | threshold | " + " | ".join(PER_LABEL_METRICS) + " |",
              "|---" * (len(PER_LABEL_METRICS) + 2) + "|"]  # fmt: skip
    for label in labels:
        threshold = result["thresholds"][label]["threshold"]
        row = [format_estimate(slice_m.get(f"{m}/{label}")) for m in PER_LABEL_METRICS]
        lines.append(f"| {label} | {threshold:.3f} | " + " | ".join(row) + " |")
    lines += ["", "## Per label (series level, max of the slices)", "",
              "| label | " + " | ".join(PER_LABEL_METRICS) + " |",
              "|---" * (len(PER_LABEL_METRICS) + 1) + "|"]  # fmt: skip
    for label in labels:
        row = [format_estimate(series_m["max"].get(f"{m}/{label}")) for m in PER_LABEL_METRICS]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    consistency = result["any_consistency"]
    if consistency["any_label"]:
        share = consistency["share_below_a_subtype"]
        lines += ["", f"`{consistency['any_label']}` below a subtype's probability (before "
                  f"enforcing): {'n/a' if share is None else f'{share:.1%}'} of test images; "
                  f"enforced: {consistency['enforced']}"]  # fmt: skip
    lines += ["", "## Label co-occurrence (test images positive for both)", "",
              "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]  # fmt: skip
    for label, row in zip(labels, result["cooccurrence"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![ROC curves](roc_curves.png)", ""]
    return "\n".join(lines)


def evaluate_and_report(
    net: torch.nn.Module,
    datamodule,
    out_dir: str | Path,
    config: EvaluationConfig,
    device,
    context: Mapping[str, object],
    settings: Mapping[str, Any],
) -> dict[str, object]:
    """Predict the validation and test splits and write the report; its metrics returned."""
    out_dir = Path(out_dir)
    test = predict_labels(net, datamodule, "test", device)
    val = (
        predict_labels(net, datamodule, "val", device) if len(datamodule.datasets["val"]) else None
    )
    result = evaluate_predictions(test, val, datamodule.class_names, config, settings)
    write_report(out_dir, result, test, context)
    return result
