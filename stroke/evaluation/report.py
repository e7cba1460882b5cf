"""The evaluation directory: metrics.json, classification report, predictions, figures, report."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import classification_report

from stroke.evaluation.attention import (
    AttentionPooler,
    has_pooled_features,
    learned_patient_predictions,
)
from stroke.evaluation.evaluate import (
    LEARNED_AGGREGATION,
    EvaluationConfig,
    SplitPredictions,
    chosen_thresholds,
    evaluate_predictions,
    predict_split,
)
from stroke.evaluation.metrics import METRICS, PER_CLASS_METRICS
from stroke.evaluation.patient import has_patient_groups
from stroke.evaluation.plots import (
    plot_confusion_matrix,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
)
from stroke.io import atomic_write_json, atomic_write_text, atomic_writer

log = logging.getLogger(__name__)

#: Rows of the headline table, in reading order: every metric, then the calibration error.
#: how each patient aggregation scores a patient, in the report's words
PATIENT_RULES = {
    "max": "the patient's most suspicious slice (lowest P(negative))",
    "mean": "the mean of the patient's slice probabilities",
    "attention": "gated attention pooling over the patient's slice features",
}
#: the attention pooling fitted for a report, beside it (stroke-train stores it in the checkpoint)
POOLER_FILE = "attention_pooler.pt"
HEADLINE = (*((m.name, m.label) for m in METRICS), ("ece", "expected calibration error"))


def write_evaluation(
    out_dir: str | Path,
    test: SplitPredictions,
    val: SplitPredictions | None,
    class_names: Sequence[str],
    config: EvaluationConfig | None = None,
    context: Mapping[str, object] | None = None,
    learned: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Evaluate and write every file of the evaluation directory; returns metrics.json's content.

    `context` (checkpoint, data, ...) is recorded in metrics.json and at the top of report.md.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = config or EvaluationConfig()
    class_names = list(class_names)
    result = evaluate_predictions(test, val, class_names, config, learned)
    result["context"] = dict(context or {})

    for split in (val, test):
        if split is not None:
            write_predictions_csv(out / f"predictions_{split.split}.csv", split, class_names)
    figures = _write_figures(out, test, class_names, result, config)
    result["files"] = {
        "figures": {name: path.name for name, path in figures.items()},
        "report": "report.md",
        "classification_report": "classification_report.txt",
    }
    for warning in result["warnings"]:
        log.warning("evaluation: %s", warning)
    atomic_write_json(out / "metrics.json", result, allow_nan=False)
    atomic_write_text(
        out / "classification_report.txt", _classification_text(test, class_names, result)
    )
    atomic_write_text(out / "report.md", _markdown(result, figures, class_names))
    return result


def write_predictions_csv(path: Path, split: SplitPredictions, class_names: Sequence[str]) -> None:
    """One row per image: path, patient, true and predicted class, a probability per class."""
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["path", "patient_id", "label", "predicted", *[f"prob_{c}" for c in class_names]]
        )
        for i in range(len(split)):
            writer.writerow(
                [
                    split.paths[i],
                    split.patient_ids[i],
                    class_names[int(split.targets[i])],
                    class_names[int(split.probs[i].argmax())],
                    *[f"{p:.6f}" for p in split.probs[i]],
                ]
            )


def _write_figures(
    out: Path,
    test: SplitPredictions,
    class_names: list[str],
    result: Mapping[str, object],
    config: EvaluationConfig,
) -> dict[str, Path]:
    matrix = np.asarray(result["image_level"]["confusion_matrix"])
    points = [
        (
            class_names.index(p.class_name),
            1 - _test_value(result, p.class_name, "specificity"),
            _test_value(result, p.class_name, "sensitivity"),
        )
        for p in chosen_thresholds(result)
    ]
    return {
        "confusion matrix (counts)": plot_confusion_matrix(
            matrix, class_names, out / "confusion_matrix.png", False, "test: confusion matrix"
        ),
        "confusion matrix (normalized by true class)": plot_confusion_matrix(
            matrix,
            class_names,
            out / "confusion_matrix_normalized.png",
            True,
            "test: confusion matrix (row-normalized)",
        ),
        "ROC curves": plot_roc(
            test.targets, test.probs, class_names, out / "roc.png", "test: ROC", points
        ),
        "precision-recall curves": plot_precision_recall(
            test.targets, test.probs, class_names, out / "pr.png", "test: precision-recall"
        ),
        "reliability diagram": plot_reliability(
            test.targets,
            test.probs,
            out / "reliability.png",
            "test: reliability",
            config.calibration_bins,
        ),
    }


def _test_value(result: Mapping[str, object], class_name: str, metric: str) -> float:
    for entry in result["image_level"]["operating_points"]:
        if entry["class"] == class_name and "test" in entry:
            value = entry["test"][metric]["value"]
            return float("nan") if value is None else value
    return float("nan")


def _classification_text(
    test: SplitPredictions, class_names: list[str], result: Mapping[str, object]
) -> str:
    labels = list(range(len(class_names)))
    parts = [
        f"test split, {len(test)} images, prediction = most probable class\n",
        classification_report(
            test.targets,
            test.probs.argmax(axis=1),
            labels=labels,
            target_names=class_names,
            digits=3,
            zero_division=0,
        ),
    ]
    for entry in result["image_level"]["operating_points"]:
        if "test" not in entry:
            continue
        point = entry["chosen_on_validation"]
        decided = test.probs[:, class_names.index(entry["class"])] >= point["threshold"]
        positive = test.targets == class_names.index(entry["class"])
        parts.append(
            f"\n{entry['class']} vs rest at the validation threshold "
            f"P({entry['class']}) >= {point['threshold']:.4f} ({point['method']})\n"
        )
        parts.append(
            classification_report(
                positive,
                decided,
                labels=[False, True],
                target_names=[f"not {entry['class']}", entry["class"]],
                digits=3,
                zero_division=0,
            )
        )
    return "".join(parts)


def format_estimate(entry: Mapping[str, object] | None) -> str:
    """`0.912 [0.871, 0.950]`, or `n/a` for an undefined value."""
    if not entry or entry.get("value") is None:
        return "n/a"
    low, high = entry.get("ci", [None, None])
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{entry['value']:.3f}{interval}"


def _metrics_table(
    metrics: Mapping[str, Mapping[str, object]], class_names: list[str]
) -> list[str]:
    lines = ["| metric | value [95% CI] |", "| --- | --- |"]
    lines += [
        f"| {label} | {format_estimate(metrics.get(key))} |"
        for key, label in HEADLINE
        if key in metrics
    ]
    columns = PER_CLASS_METRICS
    lines += ["", "| class | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for cls in class_names:
        row = [format_estimate(metrics.get(f"{m}/{cls}")) for m in columns]
        lines.append(f"| {cls} | " + " | ".join(row) + " |")
    return lines


def _operating_point_table(points: list[Mapping[str, object]]) -> list[str]:
    if not points:
        return []
    lines = [
        "| class vs rest | method | threshold | val sens / spec | test sensitivity | "
        "test specificity | test PPV | test NPV | test F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in points:
        if "test" not in entry:
            lines.append(f"| {entry['class']} | skipped: {entry['skipped']} |" + " |" * 7)
            continue
        chosen, test = entry["chosen_on_validation"], entry["test"]
        method = chosen["method"]
        if method == "sensitivity":
            method = f"sensitivity >= {chosen['target_sensitivity']}"
        lines.append(
            f"| {entry['class']} | {method} | {chosen['threshold']:.4f} | "
            f"{chosen['sensitivity']:.3f} / {chosen['specificity']:.3f} | "
            + " | ".join(
                format_estimate(test[m])
                for m in ("sensitivity", "specificity", "precision", "npv", "f1")
            )
            + " |"
        )
    return lines


def _markdown(
    result: Mapping[str, object], figures: Mapping[str, Path], class_names: list[str]
) -> str:
    settings, splits = result["settings"], result["splits"]
    level = int(round(100 * settings["ci_level"]))
    lines = ["# Evaluation report", ""]
    for key, value in result.get("context", {}).items():
        lines.append(f"- **{key}**: `{value}`")
    for warning in result.get("warnings", []):
        lines.append(f"- **warning**: {warning}")
    lines += [
        f"- **classes**: {', '.join(class_names)} "
        f"(index 0, `{class_names[0]}`, is the negative class)",
        "- **images / patients**: "
        + ", ".join(f"{s} {v['n_images']} / {v['n_patients']}" for s, v in splits.items()),
        f"- **confidence intervals**: {level}% percentile bootstrap, {settings['n_boot']} "
        f"resamples of {settings['resampling_unit']}s (seed {settings['seed']})",
        "",
        "## Test split, image level (prediction = most probable class)",
        "",
        *_metrics_table(result["image_level"]["metrics"], class_names),
        "",
        "## Operating points (threshold chosen on the validation split, applied to test)",
        "",
    ]
    lines += _operating_point_table(result["image_level"]["operating_points"]) or [
        "No validation split: no threshold chosen."
    ]
    lines += ["", "## Patient level", ""]
    if not result["patient_level"]:
        lines.append(result.get("patient_level_skipped", "not computed"))
    for how, patient in result["patient_level"].items():
        if "skipped" in patient:
            lines += [f"### `{how}`: not computed: {patient['skipped']}", ""]
            continue
        rule = PATIENT_RULES.get(how, how)
        lines += [
            f"### `{how}`: {rule}; {patient['n_patients']} patients",
            "",
            *_metrics_table(patient["metrics"], class_names),
            "",
            *_operating_point_table(patient["operating_points"]),
            "",
        ]
    lines += ["", "## Figures (test split, image level)", ""]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    lines += [
        "## Classification report",
        "",
        "See `classification_report.txt`; per-image probabilities are in `predictions_test.csv`.",
        "",
    ]
    return "\n".join(lines)


def evaluate_and_report(
    net,
    datamodule,
    out_dir: str | Path,
    config: EvaluationConfig | None = None,
    device: str = "cpu",
    context: Mapping[str, object] | None = None,
    pooler: AttentionPooler | None = None,
) -> dict[str, object]:
    """Predict the validation and test splits of a set-up datamodule and write the report.

    With `evaluation.patient_aggregations` naming `attention`, `pooler` (one stored in the
    checkpoint) scores the patients; without one, a pooling is fitted on the training split
    and saved beside the report (`POOLER_FILE`).
    """

    val = predict_split(net, datamodule, "val", device) if len(datamodule.datasets["val"]) else None
    test = predict_split(net, datamodule, "test", device)
    leakage = getattr(datamodule, "leakage_summary", lambda: None)()
    if leakage:  # the report says what was found across the splits and what was done
        context = {**(context or {}), "leakage": leakage}
    config = config or EvaluationConfig()
    learned = None
    if LEARNED_AGGREGATION in config.patient_aggregations and has_patient_groups(test.patient_ids):
        if has_pooled_features(net):
            learned, fitted = learned_patient_predictions(
                net, datamodule, val, test, device, config.seed, pooler
            )
            stored = "stored in the checkpoint" if pooler is not None else "fitted now"
            context = {**(context or {}), "attention pooling": f"{stored}, on {fitted.fitted_on}"}
            # kept beside the report: stroke-train stores it in the run's best checkpoint
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            with atomic_writer(Path(out_dir) / POOLER_FILE, "wb") as fh:
                torch.save(fitted.to_state(), fh)
        else:  # an ensemble's mean: the section says why it has no attention row
            why = "an ensemble averages several networks' outputs and has no one feature space"
            learned = {"skipped": why}
            log.warning("patient aggregation 'attention' not computed: %s", why)
    return write_evaluation(out_dir, test, val, datamodule.class_names, config, context, learned)
