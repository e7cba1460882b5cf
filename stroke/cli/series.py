"""`stroke-series stage1=<multirun folder>`: stage 2 of the subtype model, and the checkpoint
holding both stages.

Every fold run of the stage-1 cross-validation gives its held-out (test) slices' pooled
features and logits; stage 2 (a bidirectional GRU over each series in slice order) learns
from these out-of-fold features only, picking its epoch on a patient-grouped part of them.
Written in the run directory: `oof_features.npz` (what stage 2 learned from),
`checkpoints/series.ckpt` (both stages) and `metrics.json`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.io import atomic_write_json
from stroke.tasks.multilabel.features import fold_models, out_of_fold_features
from stroke.tasks.multilabel.series import fit_series_model, series_checkpoint, split_by_patient
from stroke.warnings_filter import quiet_third_party_warnings

log = logging.getLogger("stroke.series")


def save_features(path: Path, series) -> None:
    """The out-of-fold series as arrays (one row per slice), for studies and checks."""
    np.savez_compressed(
        path,
        series_id=np.array([s.series_id for s in series for _ in s.paths]),
        patient_id=np.array([s.patient_id for s in series for _ in s.paths]),
        path=np.array([p for s in series for p in s.paths]),
        order=np.concatenate([np.arange(len(s.paths)) for s in series]),
        fold=np.array([s.fold for s in series for _ in s.paths]),
        features=np.concatenate([s.features for s in series]),
        logits=np.concatenate([s.logits for s in series]),
        targets=np.concatenate([s.targets for s in series]),
    )


def train_series(cfg: DictConfig) -> Path:
    """Out-of-fold features, stage 2 fitted on them, the two-stage checkpoint written."""
    if not cfg.get("stage1"):
        raise ConfigError("stage1= names the stage-1 cross-validation (a stroke-train -m folder)")
    started = time.time()
    run_dir = Path(cfg.paths.output_dir)
    folds = fold_models(cfg.stage1)
    series = out_of_fold_features(folds, str(cfg.device))
    save_features(run_dir / "oof_features.npz", series)
    settings = {**OmegaConf.to_container(cfg.series, resolve=True), "seed": int(cfg.seed)}
    train, val = split_by_patient(series, float(settings["val_fraction"]), int(cfg.seed))
    first = folds[0].model
    log.info("stage 2: %d series for training, %d for validation (out-of-fold features of "
             "%d folds)", len(train), len(val), len(folds))  # fmt: skip
    model = fit_series_model(train, val, first.class_names, settings,
                             first.settings.get("log_loss_weights"))  # fmt: skip
    checkpoint = series_checkpoint(
        model, folds, {"run_dir": str(run_dir), "stage1": str(cfg.stage1)}
    )
    path = run_dir / "checkpoints" / "series.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    atomic_write_json(run_dir / "metrics.json", {
        "best_model_path": str(path),
        "metrics": {"val/weighted_log_loss": model.best_loss},
        "series": {"train": len(train), "val": len(val)},
        "seconds": round(time.time() - started, 1),
    }, indent=2)  # fmt: skip
    print(f"stage 2: val weighted log loss {model.best_loss:.4f}; checkpoint {path}")
    return path


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="series")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-series`."""
    quiet_third_party_warnings()
    train_series(cfg)


if __name__ == "__main__":
    main()
