"""The LightningModule: a backbone from the model factory, cross-entropy, metrics, optimizer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import MaxMetric, MinMetric

from stroke.errors import ConfigError
from stroke.evaluation.epoch_metrics import (
    EpochPredictions,
    class_support,
    epoch_scores,
    undefined_metrics,
)
from stroke.evaluation.metrics import confusion_matrix
from stroke.models import create_model
from stroke.tasks.base import TaskModule, default_optimizer, plain_values
from stroke.tasks.classification.ensemble import FlipAverage


class StrokeClassifier(TaskModule):
    """Image classifier for stroke tasks; every argument is a plain value saved in checkpoints."""

    task = "classification"
    train_epoch_metrics = ("train/loss", "train/accuracy")

    def __init__(
        self,
        backbone: Mapping[str, Any],
        num_classes: int,
        input_channels: int = 1,
        class_names: Sequence[str] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        class_weighting: str | None = None,
        class_counts: Sequence[int] | None = None,
        label_smoothing: float = 0.0,
        monitor: str = "val/f1",
        monitor_mode: str = "max",
        tta: bool = False,
        mixup: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        backbone = plain_values(backbone)
        optimizer = plain_values(optimizer) or default_optimizer()
        scheduler = plain_values(scheduler)
        class_names = list(class_names or [str(i) for i in range(num_classes)])
        if len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for num_classes={num_classes}")
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "input_channels": input_channels,
                "class_names": class_names,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "class_weighting": class_weighting,
                "class_counts": list(class_counts) if class_counts is not None else None,
                "label_smoothing": label_smoothing,
                "monitor": monitor,
                "monitor_mode": monitor_mode,
                "tta": bool(tta),
                "mixup": plain_values(mixup),
            }
        )
        self.class_names = class_names
        self.net = create_model(num_classes=num_classes, in_chans=input_channels, **backbone)
        self.criterion = nn.CrossEntropyLoss(
            weight=self._class_weights(class_weighting, class_counts, num_classes),
            label_smoothing=label_smoothing,
        )
        self.mixup = build_mixup(plain_values(mixup), num_classes)
        # the epoch's predictions, scored by the evaluation report's code at the epoch's end
        self.val_predictions = EpochPredictions(num_classes)
        self.test_predictions = EpochPredictions(num_classes)
        self.val_best = MaxMetric() if monitor_mode == "max" else MinMetric()
        self.val_best.persistent(True)  # in checkpoints: a resumed run keeps its best score
        #: `{metric: why}` for the metrics undefined on the last validation / test epoch
        self.undefined_metrics: dict[str, str] = {}
        # Training loss and accuracy are summed on the device and logged once an epoch:
        # `self.log` on every step costs more than a small GPU step (experiments/benchmarks.md).
        self.register_buffer("train_sums", torch.zeros(2), persistent=False)
        self.train_seen = 0

    @staticmethod
    def _class_weights(
        weighting: str | None, counts: Sequence[int] | None, num_classes: int
    ) -> torch.Tensor | None:
        """Inverse-frequency weights (`balanced`, as in scikit-learn) from training counts."""
        if weighting is None:
            return None
        if weighting != "balanced":
            raise ConfigError(
                f"model.class_weighting must be 'balanced' or null, got {weighting!r}"
            )
        if counts is None or len(counts) != num_classes or min(counts) < 1:
            raise ConfigError(
                f"class_weighting='balanced' needs a training count >= 1 per class, got {counts}"
            )
        counts_t = torch.tensor(counts, dtype=torch.float32)
        return counts_t.sum() / (num_classes * counts_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # -- steps ---------------------------------------------------------------------------
    def evaluation_net(self) -> nn.Module:
        """What validation, test and the evaluation report score: the backbone, or with
        `model.tta=true` the mean of it on the image and its left-right mirror."""
        if self.hparams.get("tta"):
            return FlipAverage(self.net)
        return self.net

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]):
        images, targets = batch
        logits = self(images) if self.training else self.evaluation_net()(images)
        loss = self.criterion(logits, targets)
        return loss, logits.float().softmax(dim=1), targets

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        if self.mixup is not None and len(images) % 2 == 0:  # timm mixes pairs: even batches
            mixed, soft_targets = self.mixup(images.clone(), targets)
            logits = self(mixed)
            loss, probs = self.criterion(logits, soft_targets), logits.detach().softmax(dim=1)
        else:
            loss, probs, targets = self._step(batch)
        correct = (probs.argmax(1) == targets).sum()
        self.train_sums += torch.stack((loss.detach().float() * len(targets), correct.float()))
        self.train_seen += len(targets)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, probs, targets = self._step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.val_predictions.update(probs, targets)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, probs, targets = self._step(batch)
        self.log("test/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.test_predictions.update(probs, targets)

    # -- epoch ends: metrics, best score, confusion matrix ---------------------------------
    def on_validation_epoch_end(self) -> None:
        values = self._epoch_values(self.val_predictions, "val")
        monitored = self.hparams.monitor
        if monitored in values and not self.trainer.sanity_checking:
            self.val_best.update(torch.tensor(values[monitored]))
            self.log(f"{monitored}_best", self.val_best.compute())
        # every process holds the whole epoch's predictions (gathered by TorchMetrics), so
        # every process computes the same values: no further reduction
        self.log("val/f1", values.pop("val/f1"), prog_bar=True)
        self.log_dict(values)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_values(self.test_predictions, "test"))

    def _epoch_values(self, predictions: EpochPredictions, split: str) -> dict[str, float]:
        """The split's metrics; undefined ones are NaN, their reasons kept for metrics.json."""
        probs, targets = predictions.compute()
        predictions.reset()
        values = epoch_scores(probs, targets, split, self.class_names)
        support = class_support(targets, len(self.class_names))
        reasons = undefined_metrics(values, split, self.class_names, support)
        self.undefined_metrics = {
            **{k: v for k, v in self.undefined_metrics.items() if not k.startswith(f"{split}/")},
            **reasons,
        }
        matrix = confusion_matrix(targets, probs.argmax(axis=1), len(self.class_names))
        self._log_confusion(matrix, f"{split}/confusion_matrix")
        return values

    def on_train_start(self) -> None:
        # the sanity check must not seed the best score; a resumed run keeps its own
        if not self.trainer.ckpt_path:
            self.val_best.reset()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints from before the best score was saved: it starts afresh
        for key, value in self.val_best.state_dict(prefix="val_best.").items():
            checkpoint["state_dict"].setdefault(key, value)

    def _log_confusion(self, matrix: np.ndarray, tag: str) -> None:
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                import matplotlib.pyplot as plt

                # imported on use: matplotlib only when a figure is drawn
                from stroke.evaluation.plots import confusion_matrix_figure

                fig = confusion_matrix_figure(
                    matrix, self.class_names, f"{tag} (epoch {self.current_epoch})"
                )
                logger.experiment.add_figure(tag, fig, global_step=self.current_epoch)
                plt.close(fig)

    # -- what stroke-train asks of any model ----------------------------------------------
    def describe(self) -> str:
        """The backbone's name, for reports and logs."""
        return self.hparams.backbone["name"]

    def write_evaluation(
        self, datamodule, out_dir, config, device, context: Mapping[str, object]
    ) -> dict[str, object]:
        """The evaluation report (stroke-eval's) of these weights on the test split."""
        # imported on use: the report draws with matplotlib, which loading a model skips
        from stroke.evaluation.report import evaluate_and_report

        return evaluate_and_report(
            self.evaluation_net(), datamodule, out_dir, config, device, context
        )


#: the keys of `model.mixup`, timm's Mixup arguments of the same names
MIXUP_KEYS = ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob")


def build_mixup(options: Mapping[str, Any] | None, num_classes: int):
    """timm's Mixup/CutMix from `model.mixup`, or None when both alphas are 0.

    The mixed labels are one-hot mixtures; `model.label_smoothing` is applied to them by
    the loss as to plain labels. Its random draws come from NumPy's global generator, which
    checkpoints save, so a resumed run mixes as the uninterrupted one would.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(MIXUP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key model.mixup.{unknown[0]}: expected {', '.join(MIXUP_KEYS)}")
    for key in MIXUP_KEYS:
        value = options.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise ConfigError(f"model.mixup.{key}={value!r}: expected a number >= 0")
    for key in ("prob", "switch_prob"):
        if options.get(key) is not None and options[key] > 1:
            raise ConfigError(
                f"model.mixup.{key}={options[key]!r}: expected a probability in [0, 1]"
            )
    if not (options.get("mixup_alpha") or options.get("cutmix_alpha")):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=float(options.get("mixup_alpha") or 0.0),
        cutmix_alpha=float(options.get("cutmix_alpha") or 0.0),
        prob=float(options.get("prob", 1.0)),
        switch_prob=float(options.get("switch_prob", 0.5)),
        label_smoothing=0.0,
        num_classes=num_classes,
    )
