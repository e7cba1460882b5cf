"""The segmentation evaluation directory: metrics.json, report.md, volumes, worst slices.

What `stroke-eval` writes for a segmentation checkpoint, and `stroke-train` into
`<run>/eval/`: Dice, IoU and lesion-level metrics of the test split with 95% intervals
from a bootstrap over patients; each test patient's true and predicted lesion volume
(mL where the files give the spacing, pixels otherwise) in a table and a
scatter / Bland-Altman figure; the slices with the lowest Dice in a gallery. A joint
model's class predictions get the classifier's report in `classification/`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stroke.evaluation.evaluate import EvaluationConfig, SplitPredictions
from stroke.evaluation.metrics import bootstrap_intervals, with_intervals
from stroke.evaluation.patient import has_patient_groups
from stroke.evaluation.plots import plot_slice_gallery, plot_volume_agreement
from stroke.evaluation.report import format_estimate, write_evaluation
from stroke.io import atomic_write_json, atomic_write_text, atomic_writer
from stroke.tasks.segmentation.metrics import (
    COUNT_FIELDS,
    METRICS,
    image_counts,
    scores_from_counts,
)
from stroke.tasks.segmentation.units import patient_volumes, slice_geometry

#: the columns of the per-class table: every metric (each has a value per lesion class)
PER_CLASS = tuple(m.name for m in METRICS)


@dataclass
class SegmentationPredictions:
    """A segmenter's results on one split: per-slice counts, areas and class probabilities."""

    split: str
    samples: list
    counts: dict[str, np.ndarray]  # each N x classes (see COUNT_FIELDS)
    true_area: np.ndarray  # lesion pixels of each slice, model resolution
    pred_area: np.ndarray
    targets: np.ndarray  # image classes
    class_probs: np.ndarray | None  # N x image classes (joint models)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def slice_dice(self) -> np.ndarray:
        """Dice of each slice over its lesion pixels (class included); NaN without any."""
        tp, fp, fn = (self.counts[k][:, 1:].sum(axis=1).astype(float) for k in ("tp", "fp", "fn"))
        out = np.full(len(tp), np.nan)
        np.divide(2 * tp, 2 * tp + fp + fn, out=out, where=(2 * tp + fp + fn) > 0)
        return out


@torch.no_grad()
def predict_segmentation_split(
    net: torch.nn.Module, datamodule, split: str, device: str | torch.device = "cpu"
) -> SegmentationPredictions:
    """Run the network over a split of a set-up segmentation datamodule (no augmentation)."""
    dataset = datamodule.datasets[split]
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[split]()
    num_classes = len(datamodule.lesion_classes) + 1
    was_training = net.training
    net.eval().to(device)
    rows: dict[str, list] = {k: [] for k in COUNT_FIELDS}
    true_area, pred_area, targets, probs = [], [], [], []
    for images, masks, labels in loader:
        out = net(images.to(device))
        logits, class_logits = (out[0], out[1]) if isinstance(out, tuple | list) else (out, None)
        predicted = logits.argmax(dim=1).cpu().numpy()
        for pred, true in zip(predicted, masks.numpy(), strict=True):
            for name, value in image_counts(pred, true, num_classes).items():
                rows[name].append(value)
            true_area.append(int((true > 0).sum()))
            pred_area.append(int((pred > 0).sum()))
        targets.append(labels.numpy())
        if class_logits is not None:
            probs.append(class_logits.float().softmax(dim=1).cpu().numpy())
    net.train(was_training)
    return SegmentationPredictions(
        split=split,
        samples=list(dataset.samples),
        counts={k: np.asarray(v, dtype=np.int64).reshape(-1, num_classes) for k, v in rows.items()},
        true_area=np.asarray(true_area, dtype=float),
        pred_area=np.asarray(pred_area, dtype=float),
        targets=np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64),
        class_probs=np.concatenate(probs) if probs else None,
    )


def evaluate_segmentation(
    net: torch.nn.Module,
    datamodule,
    out_dir: str | Path,
    config: EvaluationConfig | None = None,
    device: str | torch.device = "cpu",
    context: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Predict the test split (and validation, for a joint model's thresholds); write the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = config or EvaluationConfig()
    test = predict_segmentation_split(net, datamodule, "test", device)
    if len(test) == 0:
        raise ValueError("the test split holds no images: nothing to evaluate")
    lesion_classes = list(datamodule.lesion_classes)
    result = score_segmentation(test, lesion_classes, config)
    result["context"] = dict(context or {})
    volumes = _volumes(test, datamodule.preprocessing)
    result["volumes"] = volumes
    figures = {
        "lesion volume per patient: true vs predicted, Bland-Altman": plot_volume_agreement(
            [p["true"] for p in volumes["patients"]],
            [p["predicted"] for p in volumes["patients"]],
            volumes["unit"],
            out / "volumes.png",
            "test: lesion volume",
        )
    }
    worst = _worst_slices(test, config.gallery_size)
    if worst:
        figures["the worst slices (lowest Dice)"] = _gallery(
            net, datamodule, test, worst, out, device
        )
    _write_volumes_csv(out / "volumes.csv", volumes)
    _write_slices_csv(out / "predictions_test.csv", test, datamodule)
    result["files"] = {"figures": {k: p.name for k, p in figures.items()}, "report": "report.md"}
    if test.class_probs is not None:
        result["classification"] = _classification(
            net, datamodule, test, out, config, context, device
        )
    atomic_write_json(out / "metrics.json", result, allow_nan=False)
    atomic_write_text(out / "report.md", _markdown(result, figures, lesion_classes))
    return result


def score_segmentation(
    test: SegmentationPredictions, lesion_classes: Sequence[str], config: EvaluationConfig
) -> dict[str, object]:
    """Metrics with patient-bootstrap intervals (metrics.json's `image_level`) and settings."""

    def statistic(idx: np.ndarray) -> dict[str, float]:
        summed = {k: v[idx].sum(axis=0) for k, v in test.counts.items()}
        return scores_from_counts(summed, len(idx), lesion_classes)

    patient_ids = [s.patient_id for s in test.samples]
    by_patient = has_patient_groups(patient_ids)
    intervals = bootstrap_intervals(
        statistic,
        len(test),
        patient_ids if by_patient else None,
        n_boot=config.n_boot,
        level=config.ci_level,
        seed=config.seed,
    )
    return {
        "task": "segmentation",
        "lesion_classes": list(lesion_classes),
        "settings": {
            "n_boot": config.n_boot,
            "ci_level": config.ci_level,
            "seed": config.seed,
            "resampling_unit": "patient" if by_patient else "image",
            "aggregation": "global: pixel counts summed over the split, then Dice per class",
        },
        "splits": {test.split: {"n_images": len(test), "n_patients": len(set(patient_ids))}},
        # the key of the classification report: one place for a checkpoint's metrics
        "image_level": {
            "n_images": len(test),
            "metrics": with_intervals(statistic(np.arange(len(test))), intervals),
        },
    }


def _volumes(test: SegmentationPredictions, preprocessing) -> dict[str, object]:
    """True and predicted lesion volume per patient (areas scaled back to the files' pixels)."""
    geometries = [slice_geometry(s) for s in test.samples]
    patient_ids = [s.patient_id for s in test.samples]
    true_px = np.array(
        [g.native_pixels(a, preprocessing) for g, a in zip(geometries, test.true_area, strict=True)]
    )
    pred_px = np.array(
        [g.native_pixels(a, preprocessing) for g, a in zip(geometries, test.pred_area, strict=True)]
    )
    true, unit = patient_volumes(patient_ids, true_px, geometries)
    predicted, _ = patient_volumes(patient_ids, pred_px, geometries)
    rows = [
        {"patient_id": p, "true": round(true[p], 4), "predicted": round(predicted[p], 4)}
        for p in sorted(true)
    ]
    difference = np.array([r["predicted"] - r["true"] for r in rows], dtype=float)
    spread = 1.96 * float(np.std(difference, ddof=1)) if len(difference) > 1 else 0.0
    bias = float(np.mean(difference)) if len(difference) else 0.0
    return {
        "unit": unit,
        "unit_note": (
            "mL from the files' pixel and slice spacing"
            if unit == "mL"
            else "pixels of the original images summed over the patient's slices "
            "(the files give no spacing)"
        ),
        "bias": round(bias, 4),
        "limits_of_agreement": [round(bias - spread, 4), round(bias + spread, 4)],
        "patients": rows,
    }


def _worst_slices(test: SegmentationPredictions, size: int) -> list[int]:
    """Indices of the `size` slices with the lowest Dice among those with a lesion (true or
    predicted), worst first."""
    dice = test.slice_dice
    candidates = np.flatnonzero(~np.isnan(dice))
    return [int(i) for i in candidates[np.argsort(dice[candidates], kind="stable")][:size]]


@torch.no_grad()
def _gallery(net, datamodule, test, indices: list[int], out: Path, device) -> Path:
    dataset = datamodule.datasets["test"]
    pairs = [dataset.image_and_mask(i) for i in indices]
    batch = torch.stack([dataset.preprocessing.to_tensor(image) for image, _ in pairs])
    was_training = net.training
    result = net.eval().to(device)(batch.to(device))
    net.train(was_training)
    logits = result[0] if isinstance(result, tuple | list) else result
    predicted = list(logits.argmax(dim=1).cpu().numpy())
    dice = test.slice_dice
    titles = [f"{Path(test.samples[i].path).name}: Dice {dice[i]:.2f}" for i in indices]
    return plot_slice_gallery(
        [image for image, _ in pairs],
        [mask for _, mask in pairs],
        predicted,
        titles,
        out / "worst_slices.png",
        "test: lowest Dice",
    )


def _classification(net, datamodule, test, out: Path, config, context, device) -> dict:
    """The joint head's classification report (stroke-eval's), in `classification/`."""

    def as_classification(preds: SegmentationPredictions) -> SplitPredictions:
        return SplitPredictions(
            split=preds.split,
            paths=[s.path.as_posix() for s in preds.samples],
            patient_ids=[s.patient_id for s in preds.samples],
            targets=preds.targets,
            probs=preds.class_probs,
        )

    val = None
    if len(datamodule.datasets["val"]):  # its thresholds are chosen on validation
        val = as_classification(predict_segmentation_split(net, datamodule, "val", device))
    result = write_evaluation(
        out / "classification",
        as_classification(test),
        val,
        datamodule.class_names,
        config,
        context,
    )
    return {"dir": "classification", "metrics": result["image_level"]["metrics"]}


def _write_volumes_csv(path: Path, volumes: Mapping[str, object]) -> None:
    unit = volumes["unit"]
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["patient_id", f"true_volume_{unit}", f"predicted_volume_{unit}", "difference"]
        )
        for row in volumes["patients"]:
            writer.writerow(
                [
                    row["patient_id"],
                    row["true"],
                    row["predicted"],
                    round(row["predicted"] - row["true"], 4),
                ]
            )


def _write_slices_csv(path: Path, test: SegmentationPredictions, datamodule) -> None:
    """One row per slice: its file, patient, true and predicted lesion pixels, Dice."""
    dice = test.slice_dice
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "path",
                "slice_index",
                "patient_id",
                "label",
                "true_lesion_px",
                "predicted_lesion_px",
                "dice",
            ]
        )
        for i, sample in enumerate(test.samples):
            writer.writerow(
                [
                    sample.path.as_posix(),
                    "" if sample.slice_index is None else sample.slice_index,
                    sample.patient_id,
                    sample.label,
                    int(test.true_area[i]),
                    int(test.pred_area[i]),
                    "" if np.isnan(dice[i]) else f"{dice[i]:.4f}",
                ]
            )


def _markdown(
    result: Mapping[str, object], figures: Mapping[str, Path], lesion_classes: list[str]
) -> str:
    settings, volumes = result["settings"], result["volumes"]
    metrics = result["image_level"]["metrics"]
    level = int(round(100 * settings["ci_level"]))
    lines = ["# Segmentation report", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in result.get("context", {}).items()]
    lines += [
        f"- **lesion classes**: {', '.join(lesion_classes)} (background excluded from every mean)",
        "- **images / patients**: "
        + ", ".join(
            f"{s} {v['n_images']} / {v['n_patients']}" for s, v in result["splits"].items()
        ),
        f"- **confidence intervals**: {level}% percentile bootstrap, {settings['n_boot']} "
        f"resamples of {settings['resampling_unit']}s (seed {settings['seed']})",
        "- **Dice and IoU**: global, pixel counts of the whole split summed before dividing; "
        "a lesion is an 8-connected component, found when the prediction touches it",
        "",
        "## Test split",
        "",
        "| metric | value [95% CI] |",
        "| --- | --- |",
        *[f"| {m.label} | {format_estimate(metrics.get(m.name))} |" for m in METRICS],
        "",
        "| lesion class | " + " | ".join(PER_CLASS) + " |",
        "|---" * (len(PER_CLASS) + 1) + "|",
        *[
            f"| {c} | "
            + " | ".join(format_estimate(metrics.get(f"{m}/{c}")) for m in PER_CLASS)
            + " |"
            for c in lesion_classes
        ],
        "",
        f"## Lesion volume per patient ({volumes['unit']})",
        "",
        f"{volumes['unit_note']}. Bias (predicted - true) {volumes['bias']:.4g}, 95% limits of "
        f"agreement [{volumes['limits_of_agreement'][0]:.4g}, "
        f"{volumes['limits_of_agreement'][1]:.4g}]; every patient in `volumes.csv`.",
        "",
        "| patient | true | predicted |",
        "| --- | --- | --- |",
        *[
            f"| {p['patient_id']} | {p['true']:.4g} | {p['predicted']:.4g} |"
            for p in volumes["patients"][:30]
        ],
        "",
    ]
    if len(volumes["patients"]) > 30:
        lines += [f"({len(volumes['patients']) - 30} more patients in `volumes.csv`)", ""]
    if "classification" in result:
        classification = result["classification"]["metrics"]
        lines += [
            "## Classification head",
            "",
            f"Accuracy {format_estimate(classification.get('accuracy'))}, macro F1 "
            f"{format_estimate(classification.get('f1'))}, macro ROC AUC "
            f"{format_estimate(classification.get('roc_auc'))}; "
            "the full report is `classification/report.md`.",
            "",
        ]
    lines += ["## Figures (test split)", ""]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    lines += ["Per-slice lesion pixels and Dice are in `predictions_test.csv`.", ""]
    return "\n".join(lines)
