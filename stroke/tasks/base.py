"""What every task's LightningModule shares: the optimizer from config, the epoch's training
means, and the `stroke` record written into each checkpoint (stroke/checkpoint/format.py).

A task's module subclasses `TaskModule` and sets `task` to its registered name; nothing
else in stroke tells the tasks apart by name.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stroke import __version__
from stroke.checkpoint.format import RECORD_KEY, CheckpointRecord, split_datamodule_state
from stroke.config import config_default

#: keys of a scheduler config that Lightning reads, not the scheduler's constructor
_LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor")


def default_optimizer() -> dict[str, Any]:
    """The optimizer of a module built without one (a notebook, a test): the run default,
    conf/optimizer/adamw.yaml, read from there so the learning rate is written once."""
    return config_default("optimizer/adamw")


def plain_values(value: Any) -> Any:
    """DictConfig -> dict, so hyper-parameters in checkpoints are plain Python values."""
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class TaskModule(L.LightningModule):
    """The LightningModule of a task: writes the checkpoint's `stroke` record and logs the
    training epoch's exact means (a subclass adds per-image values to `train_sums`, a buffer
    of one entry per name in `train_epoch_metrics`, and counts images in `train_seen`)."""

    #: the registered task name (stroke/tasks/registry.py); a subclass sets it
    task: ClassVar[str] = ""
    #: the names `train_sums` holds, in order; the first is shown in the progress bar
    train_epoch_metrics: ClassVar[tuple[str, ...]] = ("train/loss",)
    #: whether each image has one predicted class (softmax) that Grad-CAM can explain
    explains_one_class: ClassVar[bool] = True
    class_names: list[str]

    def configure_optimizers(self):
        return configure_optimizers(self)

    def on_train_epoch_start(self) -> None:
        self.train_sums.zero_()
        self.train_seen = 0

    def on_train_epoch_end(self) -> None:
        """Epoch means of the training metrics, exact across DDP processes."""
        means = training_epoch_means(self)
        if means is not None:
            for i, name in enumerate(self.train_epoch_metrics):
                self.log(name, means[i], prog_bar=i == 0)

    def log_validation_epoch(self, values: dict[str, float], headline: str) -> None:
        """Log a validation epoch: the best monitored value so far (`<monitor>_best`, when the
        value is defined and this is not the sanity check), the headline on the progress
        bar, and the rest. Needs `self.val_best` (a Max/MinMetric)."""
        monitored = self.hparams.monitor
        value = values.get(monitored)
        if value is not None and not math.isnan(value) and not self.trainer.sanity_checking:
            self.val_best.update(torch.tensor(value))
            self.log(f"{monitored}_best", self.val_best.compute())
        self.log(headline, values.pop(headline), prog_bar=True)
        self.log_dict(values)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RECORD_KEY] = self.checkpoint_record(checkpoint).to_dict()

    def checkpoint_record(self, checkpoint: dict[str, Any]) -> CheckpointRecord:
        """The record of this module, its datamodule's state moved into it (one home)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        state = checkpoint.pop(type(datamodule).__qualname__, None) if datamodule else None
        preprocessing, data = split_datamodule_state(state)
        return CheckpointRecord(
            task=self.task,
            class_names=list(self.class_names),
            preprocessing=preprocessing,
            data=data,
            averaged_weights=_averaging(trainer),
            provenance={
                "run_dir": str(trainer.default_root_dir) if trainer is not None else None,
                "stroke_version": __version__,
                "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            },
        )


def _averaging(trainer) -> str | None:
    """`ema`/`swa` when a weight-averaging callback swaps its average into checkpoints."""
    for callback in getattr(trainer, "callbacks", None) or []:
        kind = getattr(callback, "averaging", None)
        if kind:
            return kind
    return None


def training_epoch_means(module: L.LightningModule) -> torch.Tensor | None:
    """`module.train_sums` (per-image values summed over the epoch's batches) divided by
    `module.train_seen` images, both summed over DDP processes first; None before any image."""
    strategy = module.trainer.strategy
    sums = strategy.reduce(module.train_sums.clone(), reduce_op="sum")
    seen = torch.tensor(float(module.train_seen), device=module.device)
    seen = strategy.reduce(seen, reduce_op="sum")
    return sums / seen if seen > 0 else None


def configure_optimizers(module: L.LightningModule):
    """The optimizer and scheduler a module's `optimizer` and `scheduler` hyper-parameters name."""
    optimizer = instantiate(module.hparams.optimizer, params=module.parameters())
    scheduler_cfg = module.hparams.scheduler
    if not scheduler_cfg:
        return optimizer
    scheduler_cfg = dict(scheduler_cfg)
    lightning_keys = {
        k: scheduler_cfg.pop(k) for k in _LIGHTNING_SCHEDULER_KEYS if k in scheduler_cfg
    }
    scheduler = instantiate(scheduler_cfg, optimizer=optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
