"""stroke-eval's report of a 3-D segmenter: volumes scored in their own geometry, the ISLES way.

For each test scan: Dice, lesion-wise F1, lesion count difference and absolute volume
difference (mL) per lesion class and for any lesion (stroke/evaluation/lesions.py); their
means with patient-bootstrap intervals; the agreement of predicted and true lesion volumes
(Bland-Altman). The removal of small predicted components is chosen on the validation
scans (the size that gives the best mean lesion F1; 0 when none helps) and applied unchanged
to test; the report shows the test metrics with and without it. Files: metrics.json,
volumes.csv (one row per scan), volumes.png, report.md.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import LoadImage
from tqdm import tqdm

from stroke.errors import DatasetError
from stroke.evaluation.evaluate import EvaluationConfig
from stroke.evaluation.lesions import bland_altman, remove_small_lesions, volume_scores
from stroke.evaluation.metrics import bootstrap_intervals, with_intervals
from stroke.evaluation.plots import plot_volume_agreement
from stroke.io import atomic_write_json, atomic_writer
from stroke.tasks.segmentation_3d.inference import VolumePredictor, VolumeResult, min_lesion_voxels

log = logging.getLogger("stroke.eval")

#: smallest kept lesion, in mL, tried on the validation scans (0: keep every component)
MIN_LESION_CANDIDATES_ML = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
#: the checkpoint entry holding the chosen post-processing (stroke.checkpoint.add_to_checkpoint)
POSTPROCESSING_KEY = "volume_postprocessing"


def read_truth(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A label volume on its image's grid (read as the image is), or an error naming it."""
    try:
        labels = np.asarray(LoadImage(image_only=True)(str(path)))
    except Exception as err:  # MONAI wraps its readers' errors in several types
        raise DatasetError(f"cannot read label volume {path}: {err}") from err
    labels = np.rint(labels).astype(np.int64)
    if labels.shape != tuple(shape):
        raise DatasetError(
            f"label volume {path} has shape {labels.shape}, but its image has {tuple(shape)}"
        )
    return labels


def _predict_split(predictor: VolumePredictor, samples: Sequence, what: str) -> list:
    """(sample, raw result, truth) for every scan of a split."""
    out = []
    for sample in tqdm(samples, desc=f"predicting {what} volumes", unit="volume", leave=False):
        result = predictor.predict(sample.path)
        out.append((sample, result, read_truth(sample.mask_path, result.labels.shape)))
    return out


def _labels_after(result: VolumeResult, min_ml: float) -> np.ndarray:
    limits = min_lesion_voxels([min_ml] * len(result.lesion_classes), result.voxel_ml)
    if not limits:
        return result.labels
    return remove_small_lesions(result.labels, limits, len(result.lesion_classes))


def _scores(predicted: list, lesion_classes: Sequence[str], min_ml: float) -> list[dict]:
    return [
        volume_scores(truth, _labels_after(result, min_ml), lesion_classes, result.spacing)
        for _, result, truth in predicted
    ]


def _headline(lesion_classes: Sequence[str]) -> str:
    return "any" if len(lesion_classes) > 1 else lesion_classes[0]


def _mean(rows: list[dict], key: str) -> float:
    values = np.array([row[key] for row in rows], dtype=float)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def choose_min_lesion_ml(
    val: list, lesion_classes: Sequence[str]
) -> tuple[float, dict[str, float]]:
    """The smallest-lesion size (mL) that gives the validation scans their best mean lesion
    F1 (ties: the better Dice, then the smaller size); 0 without validation scans."""
    if not val:
        return 0.0, {}
    key = _headline(lesion_classes)
    tried = {}
    best, best_score = 0.0, (-1.0, -1.0)
    for size in MIN_LESION_CANDIDATES_ML:
        rows = _scores(val, lesion_classes, size)
        f1, dice = _mean(rows, f"lesion_f1/{key}"), _mean(rows, f"dice/{key}")
        tried[str(size)] = f1
        score = (float(np.nan_to_num(f1, nan=-1.0)), float(np.nan_to_num(dice, nan=-1.0)))
        # a larger size must do better, not as well: ties keep the smaller one
        better_f1 = score[0] > best_score[0] + 1e-9
        better_dice = abs(score[0] - best_score[0]) <= 1e-9 and score[1] > best_score[1] + 1e-9
        if better_f1 or better_dice:
            best, best_score = size, score
    return best, tried


def _summary(rows: list[dict], groups: Sequence[str], config: EvaluationConfig) -> dict:
    keys = list(rows[0])
    table = {k: np.array([row[k] for row in rows], dtype=float) for k in keys}

    def statistic(indices: np.ndarray) -> dict[str, float]:
        out = {}
        for k in keys:
            values = table[k][indices]
            out[k] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
        return out

    point = statistic(np.arange(len(rows)))
    intervals = bootstrap_intervals(
        statistic, len(rows), groups, config.n_boot, config.ci_level, config.seed
    )
    return with_intervals(point, intervals)


def evaluate_volumes(
    nets: Sequence,
    datamodule,
    out_dir: str | Path,
    config: EvaluationConfig | None,
    device: str,
    context: Mapping[str, object] | None,
    hparams: Mapping[str, Any],
) -> dict[str, object]:
    """Predict the validation and test scans, choose the post-processing, write the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = config or EvaluationConfig()
    lesion_classes = list(datamodule.lesion_classes)
    plan = datamodule.plan.as_dict()
    predictor = VolumePredictor(
        nets, plan, lesion_classes, str(device), hparams["sw_overlap"], hparams["sw_batch_size"]
    )
    test_samples = datamodule.split_samples("test")
    if not test_samples:
        raise DatasetError("the test split holds no scans: nothing to evaluate")
    val = _predict_split(predictor, datamodule.split_samples("val"), "validation")
    min_ml, tried = choose_min_lesion_ml(val, lesion_classes)
    test = _predict_split(predictor, test_samples, "test")
    groups = [sample.patient_id for sample, _, _ in test]
    rows = _scores(test, lesion_classes, min_ml)
    raw_rows = _scores(test, lesion_classes, 0.0) if min_ml else rows
    key = _headline(lesion_classes)
    true_ml = np.array([row[f"volume_true_ml/{key}"] for row in rows])
    pred_ml = np.array([row[f"volume_pred_ml/{key}"] for row in rows])
    result: dict[str, object] = {
        "task": "segmentation_3d",
        "lesion_classes": lesion_classes,
        "headline": key,
        "volume_level": _summary(rows, groups, config),
        "volume_level_without_postprocessing": _summary(raw_rows, groups, config),
        "volume_agreement_ml": bland_altman(true_ml, pred_ml),
        "postprocessing": {
            "min_lesion_ml": min_ml,
            "chosen_on": f"{len(val)} validation scans" if val else "nothing (no validation scans)",
            "validation_lesion_f1_by_min_lesion_ml": tried,
        },
        "scans": len(test),
        "patients": len(set(groups)),
        "plan": plan,
        "ci_level": config.ci_level,
        "n_boot": config.n_boot,
        "context": dict(context or {}),
        "checkpoint_extras": {
            POSTPROCESSING_KEY: {"min_lesion_ml": [min_ml] * len(lesion_classes)}
        },
    }
    figure = plot_volume_agreement(
        true_ml, pred_ml, "mL", out / "volumes.png", "test: lesion volume"
    )
    result["files"] = {"figures": {"lesion volume: true vs predicted, Bland-Altman": figure.name},
                       "report": "report.md", "volumes": "volumes.csv"}  # fmt: skip
    _write_rows(out / "volumes.csv", test, rows)
    atomic_write_json(out / "metrics.json", _plain(result), indent=2)
    with atomic_writer(out / "report.md") as f:
        f.write(_markdown(result))
    return result


def _plain(value: Any) -> Any:
    """NaN as null, numpy numbers as Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write_rows(path: Path, predicted: list, rows: list[dict]) -> None:
    keys = list(rows[0]) if rows else []
    with atomic_writer(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "patient_id", "path", *keys])
        for (sample, _, _), row in zip(predicted, rows, strict=True):
            values = ["" if np.isnan(row[k]) else f"{row[k]:.6g}" for k in keys]
            writer.writerow([sample.series_id, sample.patient_id, str(sample.path), *values])


def _cell(entry: Mapping[str, Any]) -> str:
    value, (low, high) = entry["value"], entry["ci"]
    if value is None:
        return "undefined"
    interval = "" if low is None else f" ({low:.3f}-{high:.3f})"
    return f"{value:.3f}{interval}"


def _markdown(result: Mapping[str, Any]) -> str:
    classes = [*result["lesion_classes"], *(["any"] if len(result["lesion_classes"]) > 1 else [])]
    metrics = ("dice", "lesion_f1", "lesion_count_difference", "absolute_volume_difference_ml")
    level = int(round(100 * result["ci_level"]))
    lines = [
        "# 3-D lesion segmentation: test volumes",
        "",
        *(f"- {k}: {v}" for k, v in result["context"].items()),
        f"- {result['scans']} test scans of {result['patients']} patients; means over scans "
        f"with {level}% patient-bootstrap intervals ({result['n_boot']} resamples); undefined: "
        "a class absent from both truth and prediction",
        f"- post-processing: components under {result['postprocessing']['min_lesion_ml']} mL "
        f"removed, chosen on {result['postprocessing']['chosen_on']}",
        "",
    ]
    for title, key in (
        ("With post-processing", "volume_level"),
        ("Without post-processing", "volume_level_without_postprocessing"),
    ):
        lines += [f"## {title}", "", "| class | " + " | ".join(metrics) + " |",
                  "|---" * (len(metrics) + 1) + "|"]  # fmt: skip
        for name in classes:
            cells = [_cell(result[key][f"{m}/{name}"]) for m in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    agreement = result["volume_agreement_ml"]
    lines += [
        f"## Volume agreement ({result['headline']}, mL)",
        "",
        f"bias {agreement['bias_ml']:.3f} mL, 95% limits of agreement "
        f"{agreement['lower_limit_ml']:.3f} to {agreement['upper_limit_ml']:.3f} mL "
        f"({agreement['n']} scans)",
        "",
        *(f"![{title}]({name})" for title, name in result["files"]["figures"].items()),
        "",
    ]
    return "\n".join(lines)


def read_report(path: Path) -> dict:
    """metrics.json of a 3-D report (tests, stroke-cv)."""
    return json.loads(Path(path).read_text())
