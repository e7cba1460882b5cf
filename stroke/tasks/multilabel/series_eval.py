"""`stroke-predict` and `stroke-eval` on a series model (`multilabel_series`).

Prediction writes the multi-label CSV (predict.py's): a row per slice with stage 2's slice
probabilities, and a row per series with its series head's. Evaluation scores the test
split at slice and series level for the sequence model side by side with the fold models
alone (stage 1, their mean probability), whose series are scored by the max and the mean
of their slices' probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from stroke.errors import ConfigError
from stroke.evaluation.report import format_estimate
from stroke.hardware import resolve_device
from stroke.inference.consistency import align_preprocessing, check_windows
from stroke.inference.predictor import resolve_inputs
from stroke.io import atomic_write_json, atomic_write_text
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.multilabel.evaluate import multilabel_data_config
from stroke.tasks.multilabel.features import SeriesFeatures, split_series
from stroke.tasks.multilabel.metrics import label_weights
from stroke.tasks.multilabel.predict import (
    decision_thresholds,
    group_series,
    series_inputs,
    write_rows,
)
from stroke.tasks.multilabel.report import (
    SERIES_AGGREGATIONS,
    LabelPredictions,
    evaluate_predictions,
    scored,
    write_report,
)
from stroke.tasks.multilabel.series import LoadedSeriesModel, load_series

#: the comparison report.md shows: (section, metric, where in metrics.json)
COMPARED = ("weighted_log_loss", "roc_auc", "micro_roc_auc", "average_precision")


def _one_checkpoint(cfg: DictConfig) -> Path:
    paths = checkpoint_paths(cfg.ckpt_path)
    if len(paths) != 1:
        raise ConfigError("a series model holds its fold models already: give one series.ckpt")
    return paths[0]


def run_series_prediction(cfg: DictConfig) -> tuple[Path, int, int]:
    """Predict every input series: slice rows and a series row from stage 2."""
    model = load_series(_one_checkpoint(cfg))
    if model.preprocessing is None:
        raise ConfigError(f"{model.path} records no preprocessing")
    device = resolve_device(cfg.device)
    report = model.path.parent.parent / "eval" / "metrics.json"
    thresholds = np.asarray(decision_thresholds(cfg, model.class_names, report))
    all_series = group_series(resolve_inputs(cfg.inputs))
    series_probs: list[np.ndarray | None] = []
    for series in all_series:
        readable, inputs = series_inputs(series, model.preprocessing)
        if not inputs:
            series_probs.append(None)
            continue
        images = torch.from_numpy(np.stack(inputs))
        per_member = [[model.member_series(m, images, device, int(cfg.batch_size))]
                      for m in model.members]  # fmt: skip
        slices, whole = model.read(per_member, device)
        for j, index in enumerate(readable):
            series[index].probs = slices[0][j]
        series_probs.append(whole[0])
    output = Path(cfg.output_csv)
    write_rows(output, all_series, model.class_names, thresholds, series_probs)
    failures = sum(1 for series in all_series for item in series if item.error)
    return output, sum(len(s) for s in all_series), failures


def _flat(series: Sequence[SeriesFeatures], probs: Sequence[np.ndarray], split: str):
    """Per-series arrays as the report's slice-level predictions."""
    return LabelPredictions(
        split=split,
        paths=[p for s in series for p in s.paths],
        patient_ids=[s.patient_id for s in series for _ in s.paths],
        series_ids=[s.series_id for s in series for _ in s.paths],
        targets=np.concatenate([s.targets for s in series]),
        probs=np.concatenate(list(probs)),
    )


def score_split(model: LoadedSeriesModel, datamodule, split: str, device):
    """(stage 1's predictions, stage 2's, stage 2's series probabilities) of a split."""
    per_member = [split_series(m, datamodule, split, device) for m in model.members]
    if not per_member[0]:
        return None
    slices, whole = model.read(per_member, device)
    series = per_member[0]
    stage1 = _flat(series, model.stage1_probs(per_member), split)
    return stage1, _flat(series, slices, split), whole


def evaluate_series(
    cfg: DictConfig, paths: list[Path], data_cfg: DictConfig, origin: str, overrides: list[str]
) -> dict[str, object]:
    """The sequence model and its fold models alone, on the test split of the data."""
    model = load_series(paths[0])
    data_cfg, preprocessing = align_preprocessing(data_cfg, model.preprocessing, overrides)
    datamodule = instantiate(multilabel_data_config(data_cfg, model.members[0]))
    datamodule.setup("test")
    check_windows(datamodule.preprocessing, model.preprocessing, overrides)
    if datamodule.input_channels != model.input_channels:
        raise ConfigError(
            f"checkpoint {model.path} takes {model.input_channels} input channels, but the "
            f"data ({origin}) gives {datamodule.input_channels}"
        )
    device = resolve_device(cfg.device)
    test = score_split(model, datamodule, "test", device)
    if test is None:
        raise ConfigError(f"the data ({origin}) have an empty test split")
    val = score_split(model, datamodule, "val", device) if len(datamodule.datasets["val"]) else None
    config, labels = instantiate(cfg.evaluation), model.class_names
    stage1 = evaluate_predictions(test[0], val and val[0], labels, config, model.settings)
    sequence = evaluate_predictions(test[1], val and val[1], labels, config, model.settings)
    series_targets = np.stack([t.max(axis=0) for t in _per_series(test[1])])
    patients = list(dict.fromkeys(zip(test[1].series_ids, test[1].patient_ids, strict=True)))
    weights = label_weights(labels, model.settings.get("log_loss_weights"))
    cuts = [sequence["thresholds"][label]["threshold"] for label in labels]
    sequence["series_level"]["sequence"] = scored(
        series_targets, test[2], [p for _, p in patients], labels, weights, cuts, config
    )
    out_dir = Path(cfg.paths.output_dir)
    context = {"checkpoint": str(model.path), "model": model.description, "data": origin,
               "preprocessing": preprocessing}  # fmt: skip
    write_report(out_dir / "stage1", stage1, test[0], context)
    write_report(out_dir / "sequence", sequence, test[1], context)
    result = {"labels": labels, "stage1": stage1, "sequence": sequence}
    atomic_write_json(out_dir / "metrics.json", result, indent=2)
    atomic_write_text(out_dir / "report.md", comparison_markdown(result, context))
    print(comparison_line(result))
    print(f"evaluation directory: {out_dir}")
    return result


def _per_series(predictions: LabelPredictions) -> list[np.ndarray]:
    rows: dict[str, list[int]] = {}
    for i, series in enumerate(predictions.series_ids):
        rows.setdefault(series, []).append(i)
    return [predictions.targets[r] for r in rows.values()]


def comparison_columns(result: Mapping) -> dict[str, Mapping]:
    """Each way of scoring: slices (stage 1, sequence) and series (max, mean, sequence)."""
    stage1, sequence = result["stage1"], result["sequence"]
    columns = {
        "slices: stage 1": stage1["slice_level"],
        "slices: sequence": sequence["slice_level"],
    }
    for name in SERIES_AGGREGATIONS:
        columns[f"series: stage 1 {name}"] = stage1["series_level"][name]
    columns["series: sequence"] = sequence["series_level"]["sequence"]
    return columns


def comparison_line(result: Mapping) -> str:
    columns = comparison_columns(result)
    any_label = result["stage1"]["any_consistency"]["any_label"] or result["labels"][-1]
    parts = [f"{name} weighted log loss {columns[name]['weighted_log_loss']['value']:.4f}"
             for name in list(columns)[:2]]  # fmt: skip
    parts += [f"{name} {any_label} ROC AUC {columns[name][f'roc_auc/{any_label}']['value']}"
              for name in list(columns)[2:]]  # fmt: skip
    return "test: " + "; ".join(parts)


def comparison_markdown(result: Mapping, context: Mapping[str, object]) -> str:

    columns = comparison_columns(result)
    lines = ["# Series model evaluation", ""] + [f"- {k}: {v}" for k, v in context.items()]
    lines += ["", "Stage 1: the fold models' mean slice probability; series by max and mean "
              "of the slices. Sequence: stage 2 (its slice head; its series head). Patient "
              "bootstrap intervals. Details: stage1/ and sequence/report.md.", ""]  # fmt: skip
    lines += ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    names = [*COMPARED, *(f"roc_auc/{label}" for label in result["labels"])]
    for name in names:
        row = [format_estimate(values.get(name)) for values in columns.values()]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
