"""Stage 2's inputs: every slice's pooled backbone features and logits, out of fold.

Fold i's model of a patient-grouped cross-validation (`stroke-train -m data.fold=0,...`,
`data.fold_split=test`) never trained on fold i's test split, so the features it gives
those slices are what it would give a new patient's. Gathered over every fold, each slice
has features from the one model that did not see it: the series model (stage 2) learns
from these only, never from features of slices their model trained on
(`check_out_of_fold` refuses them, naming a slice).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from stroke.checkpoint import run_config_of
from stroke.errors import ConfigError, DatasetError
from stroke.runs.checkpoints import best_checkpoint_of_run
from stroke.runs.cross_validation import read_fold_run
from stroke.tasks.multilabel.checkpoint import LoadedMultiLabel, load_multilabel
from stroke.tasks.multilabel.evaluate import multilabel_data_config

log = logging.getLogger(__name__)


def slice_features(net: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features, logits) of a batch: timm's `forward_head(..., pre_logits=True)`,
    which stroke's own CNNs provide too."""
    maps = net.forward_features(images)
    return net.forward_head(maps, pre_logits=True).flatten(1), net.forward_head(maps)


@dataclass
class SeriesFeatures:
    """One series' slices in slice order: inputs (features, logits) and 0/1 targets."""

    series_id: str
    patient_id: str
    paths: list[str]
    features: np.ndarray  # slices x F
    logits: np.ndarray  # slices x labels
    targets: np.ndarray  # slices x labels
    #: the fold whose model gave these features (its test split held the series)
    fold: int | None = None
    #: where each slice sits in the series (InstanceNumber order along the normal)
    positions: list[float] = field(default_factory=list)

    def inputs(self, use_features: bool = True) -> np.ndarray:
        """Stage 2's input of each slice: [features | logits], or the logits alone."""
        if not use_features:
            return self.logits.astype(np.float32)
        return np.concatenate([self.features, self.logits], axis=1).astype(np.float32)


@dataclass
class FoldModel:
    """One fold's run: its stage-1 model, its fold number and its training slices."""

    run_dir: Path
    fold: int
    model: LoadedMultiLabel
    training_paths: frozenset[str]


def fold_models(stage1: str | Path) -> list[FoldModel]:
    """Every fold of a cross-validation multirun folder, checked to be one complete sweep."""
    stage1 = Path(stage1).expanduser()
    if not stage1.is_dir():
        raise ConfigError(f"stage1={str(stage1)!r} is not a folder (a stroke-train -m multirun)")
    runs = sorted(p.parent for p in stage1.glob("*/metrics.json"))
    folds = [read_fold_run(run) for run in runs]
    folds = [f for f in folds if f.fold is not None]
    if not folds:
        raise ConfigError(
            f"stage1={str(stage1)!r} holds no finished fold runs: run stroke-train -m "
            "experiment=ich_subtypes_series data.fold=0,1,2,3,4 first"
        )
    expected = set(range(folds[0].folds or 0))
    missing = sorted(expected - {f.fold for f in folds})
    if missing or len({f.fold for f in folds}) != len(folds):
        raise ConfigError(
            f"stage1={str(stage1)!r} lacks fold(s) {missing} of {folds[0].folds} (or repeats "
            "one): stage 2 needs every fold, so each slice has out-of-fold features"
        )
    models = []
    for run in sorted(folds, key=lambda f: f.fold):
        model = load_multilabel(best_checkpoint_of_run(run.run_dir))
        models.append(FoldModel(run.run_dir, run.fold, model, _training_paths(run.run_dir)))
    first = models[0].model
    for other in models[1:]:
        if other.model.class_names != first.class_names:
            raise ConfigError(
                f"stage1={str(stage1)!r} mixes labels: fold {models[0].fold} predicts "
                f"{first.class_names}, fold {other.fold} {other.model.class_names}"
            )
    return models


def _training_paths(run_dir: Path) -> frozenset[str]:
    """The slices a fold's model trained on, from its splits.csv."""
    with (run_dir / "splits.csv").open(newline="") as fh:
        return frozenset(row["path"] for row in csv.DictReader(fh) if row["split"] == "train")


def check_out_of_fold(series: Sequence[SeriesFeatures], folds: Sequence[FoldModel]) -> None:
    """Refuse a slice whose features come from a model that trained on it."""
    training = {f.fold: f.training_paths for f in folds}
    for item in series:
        seen = training.get(item.fold, frozenset()).intersection(item.paths)
        if seen:
            raise DatasetError(
                f"{sorted(seen)[0]} is a training slice of fold {item.fold}, whose model gave "
                "its features: stage 2 learns from out-of-fold features only"
            )


def out_of_fold_features(
    folds: Sequence[FoldModel], device: str = "cpu", data_overrides: dict | None = None
) -> list[SeriesFeatures]:
    """Every fold's test slices through that fold's model, as series in slice order."""
    series: list[SeriesFeatures] = []
    for fold in folds:
        datamodule = _fold_datamodule(fold, data_overrides)
        series += split_series(fold.model, datamodule, "test", device, fold.fold)
    check_out_of_fold(series, folds)
    return series


def _fold_datamodule(fold: FoldModel, data_overrides: dict | None):
    """The fold's data, rebuilt from its run's config (same seed: the same split)."""
    run_cfg = run_config_of(fold.model.path)
    if run_cfg is None or "data" not in run_cfg:
        raise ConfigError(f"fold run {fold.run_dir} has no .hydra/config.yaml to rebuild its data")
    data_cfg = multilabel_data_config(run_cfg.data, fold.model)
    for key, value in (data_overrides or {}).items():
        data_cfg[key] = value
    datamodule = instantiate(data_cfg)
    datamodule.setup("test")
    return datamodule


def split_series(
    model: LoadedMultiLabel, datamodule, split: str, device: str, fold: int | None = None
) -> list[SeriesFeatures]:
    """A set-up datamodule's split through `model`: features and logits, grouped by series."""
    dataset = datamodule.datasets[split]
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[split]()
    net = model.net.eval().to(device)
    features, logits, targets = [], [], []
    with torch.no_grad():
        for images, labels in loader:
            f, z = slice_features(net, images.to(device))
            features.append(f.float().cpu())
            logits.append(z.float().cpu())
            targets.append(labels.float())
    if not targets:
        return []
    return group_slices(
        dataset.samples, torch.cat(features).numpy(), torch.cat(logits).numpy(),
        torch.cat(targets).numpy(), fold,
    )  # fmt: skip


def group_slices(samples, features, logits, targets, fold=None) -> list[SeriesFeatures]:
    """Per-slice arrays (in `samples` order) as series sorted along the slice normal."""
    rows: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        rows.setdefault(sample.series_id or sample.patient_id, []).append(i)
    series = []
    for series_id, indices in rows.items():
        positions = [samples[i].slice_position for i in indices]
        if all(p is not None for p in positions):
            indices = [i for _, i in sorted(zip(positions, indices, strict=True))]
        series.append(
            SeriesFeatures(
                series_id=series_id,
                patient_id=samples[indices[0]].patient_id,
                paths=[samples[i].path.as_posix() for i in indices],
                features=features[indices],
                logits=logits[indices],
                targets=targets[indices],
                fold=fold,
                positions=[samples[i].slice_position or 0.0 for i in indices],
            )
        )
    return series
