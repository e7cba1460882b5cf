"""Build the parts of a run from its composed config: data, model, callbacks, loggers, trainer.

`stroke-train`, `stroke-bench` and the tests build runs the same way, through these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from stroke.data.batch_augment import BatchAugmentation
from stroke.data.datamodule import StrokeDataModule
from stroke.errors import ConfigError


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate every entry of a config group holding several objects (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(node) for node in cfg.values() if node is not None and "_target_" in node]


def build_datamodule(cfg: DictConfig, augment: bool = True, **overrides: Any) -> StrokeDataModule:
    """The datamodule `cfg.data` describes, training images augmented by `cfg.augmentation`.

    A per-image policy (albumentations) runs in the loader; a `BatchAugmentation`
    (`augmentation=gpu`) runs on whole batches on the training device.
    """

    transform = instantiate(cfg.augmentation) if augment and cfg.get("augmentation") else None
    if isinstance(transform, BatchAugmentation):
        return instantiate(cfg.data, train_transform=None, batch_transform=transform, **overrides)
    return instantiate(cfg.data, train_transform=transform, **overrides)


def build_model(cfg: DictConfig, datamodule: StrokeDataModule) -> L.LightningModule:
    """The LightningModule `cfg.model` names, sized by what the data holds (set up first).

    The datamodule says what its model needs (`model_arguments`): classes and channels,
    and for segmentation data its lesion classes too.
    """
    arguments = datamodule.model_arguments()
    try:
        return instantiate(
            cfg.model, **arguments, monitor=cfg.monitor, monitor_mode=cfg.monitor_mode
        )
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            raise ConfigError(
                f"model {cfg.model.get('_target_')} cannot be built from data "
                f"{cfg.data.get('_target_')}, which gives it {sorted(arguments)} ({cause}); "
                "a segmentation datamodule needs a segmentation model and the other way "
                "round (e.g. experiment=lesion_segmentation)"
            ) from err
        raise


def build_trainer(
    cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = (), **overrides: Any
) -> L.Trainer:
    """The trainer with the configured callbacks and loggers (plus `extra_callbacks`)."""
    loggers = instantiate_dict(cfg.get("logger"))
    callbacks = instantiate_dict(cfg.get("callbacks")) + list(extra_callbacks)
    if not loggers:  # `logger=none`: the LR monitor has nothing to write to and would raise
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, **overrides)
