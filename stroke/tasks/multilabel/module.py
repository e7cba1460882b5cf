"""The multi-label classifier: N independent findings per image (sigmoid outputs).

Any backbone `stroke.models.create_model` knows, with one output per label, trained with
`BCEWithLogits` (optionally `pos_weight`: negatives / positives per label on the training
split, `loss.pos_weight=balanced`). Validation and test log every metric of
`stroke.tasks.multilabel.metrics` (`val/weighted_log_loss`, `val/roc_auc/<label>`, ...),
computed by the same functions the report uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import CatMetric, MaxMetric, MinMetric

from stroke.errors import ConfigError
from stroke.models import create_model
from stroke.tasks.base import TaskModule, default_optimizer, plain_values
from stroke.tasks.multilabel.metrics import label_weights, multilabel_scores

#: `model.loss` keys: pos_weight (null | balanced | a list, one per label) and the RSNA
#: log-loss weights per label (labels not named weigh 1)
LOSS_KEYS = ("pos_weight", "log_loss_weights")


class MultiLabelClassifier(TaskModule):
    """Independent sigmoid outputs, one per label of the data (`class_names`)."""

    task = "multilabel"
    train_epoch_metrics = ("train/loss",)
    explains_one_class = False  # sigmoid per label: the softmax Grad-CAM callback skips it

    def __init__(
        self,
        backbone: Mapping[str, Any],
        num_classes: int,
        input_channels: int = 1,
        class_names: Sequence[str] | None = None,
        label_counts: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        enforce_any: bool = False,
        monitor: str = "val/weighted_log_loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        backbone = plain_values(backbone)
        loss = dict(plain_values(loss) or {})
        unknown = sorted(set(loss) - set(LOSS_KEYS))
        if unknown:
            raise ConfigError(f"unknown key model.loss.{unknown[0]}: expected {list(LOSS_KEYS)}")
        class_names = list(class_names or [str(i) for i in range(num_classes)])
        if len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} label names for num_classes={num_classes}")
        counts = dict(plain_values(label_counts) or {})
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "input_channels": input_channels,
                "class_names": class_names,
                "label_counts": counts,
                "optimizer": plain_values(optimizer) or default_optimizer(),
                "scheduler": plain_values(scheduler),
                "loss": loss,
                "enforce_any": bool(enforce_any),
                "monitor": monitor,
                "monitor_mode": monitor_mode,
            }
        )
        self.class_names = class_names
        self.any_label = counts.get("any_label")
        self.log_loss_weights = label_weights(class_names, loss.get("log_loss_weights"))
        self.net = create_model(num_classes=num_classes, in_chans=input_channels, **backbone)
        pos_weight = _pos_weight(loss.get("pos_weight"), counts, num_classes)
        self.criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.val_outputs = {"probs": CatMetric(), "targets": CatMetric()}
        self.test_outputs = {"probs": CatMetric(), "targets": CatMetric()}
        for split, outputs in (("val", self.val_outputs), ("test", self.test_outputs)):
            for name, metric in outputs.items():
                self.add_module(f"{split}_{name}", metric)
        self.val_best = MaxMetric() if monitor_mode == "max" else MinMetric()
        self.val_best.persistent(True)
        self.register_buffer("train_sums", torch.zeros(1), persistent=False)
        self.train_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def evaluation_net(self) -> nn.Module:
        """What the report scores: the backbone (its logits; the report applies sigmoid)."""
        return self.net

    # -- steps ---------------------------------------------------------------------------
    def _step(self, batch):
        images, targets = batch
        logits = self(images)
        loss = self.criterion(logits, targets.float())
        return loss, torch.sigmoid(logits.float()), targets

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, targets = self._step(batch)
        self.train_sums += loss.detach().float() * len(targets)
        self.train_seen += len(targets)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, probs, targets = self._step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.val_outputs["probs"].update(probs)
        self.val_outputs["targets"].update(targets.float())

    def test_step(self, batch, batch_idx: int) -> None:
        loss, probs, targets = self._step(batch)
        self.log("test/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.test_outputs["probs"].update(probs)
        self.test_outputs["targets"].update(targets.float())

    def on_validation_epoch_end(self) -> None:
        values = self._epoch_values(self.val_outputs, "val")
        self.log_validation_epoch(values, "val/weighted_log_loss")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_values(self.test_outputs, "test"))

    def _epoch_values(self, outputs: dict[str, CatMetric], split: str) -> dict[str, float]:
        """The split's metrics at threshold 0.5 (the report chooses thresholds on val)."""
        if outputs["probs"].update_count == 0:
            return {}
        probs = outputs["probs"].compute().reshape(-1, len(self.class_names))
        targets = outputs["targets"].compute().reshape(-1, len(self.class_names))
        for metric in outputs.values():
            metric.reset()
        scores = multilabel_scores(
            targets.cpu().numpy(), probs.cpu().numpy(), self.class_names, self.log_loss_weights
        )
        return {f"{split}/{name}": value for name, value in scores.items()}

    def on_train_start(self) -> None:
        if not self.trainer.ckpt_path:
            self.val_best.reset()

    # -- what stroke-train asks of any model ----------------------------------------------
    def describe(self) -> str:
        return f"{self.hparams.backbone['name']} (multi-label)"

    def write_evaluation(
        self, datamodule, out_dir, config, device, context: Mapping[str, object]
    ) -> dict[str, object]:
        """The multi-label report (stroke-eval's) of these weights on the test split."""
        # imported on use: the report draws with matplotlib, which loading a model skips
        from stroke.tasks.multilabel.report import evaluate_and_report

        return evaluate_and_report(
            self.net, datamodule, out_dir, config, device, context, self.report_settings()
        )

    def report_settings(self) -> dict[str, Any]:
        """What the report and prediction need of the model beyond its network."""
        return {
            "any_label": self.any_label,
            "enforce_any": bool(self.hparams.enforce_any),
            "log_loss_weights": dict(self.hparams.loss.get("log_loss_weights") or {}),
        }


def _pos_weight(setting: Any, counts: Mapping[str, Any], num_classes: int) -> torch.Tensor | None:
    """`balanced`: negatives / positives per label on the training split; a list as given."""
    if setting is None:
        return None
    if setting == "balanced":
        positives, images = counts.get("positives"), counts.get("images")
        if not positives or not images or len(positives) != num_classes or min(positives) < 1:
            raise ConfigError(
                "model.loss.pos_weight=balanced needs a positive training image of every "
                f"label, got positives {positives} of {images} images"
            )
        pos = torch.tensor(positives, dtype=torch.float32)
        return (float(images) - pos) / pos
    if isinstance(setting, Sequence) and not isinstance(setting, str):
        if len(setting) != num_classes or min(float(v) for v in setting) <= 0:
            raise ConfigError(
                f"model.loss.pos_weight must be null, balanced or {num_classes} numbers > 0, "
                f"got {list(setting)}"
            )
        return torch.tensor([float(v) for v in setting])
    raise ConfigError(
        f"model.loss.pos_weight must be null, balanced or a list of numbers, got {setting!r}"
    )
