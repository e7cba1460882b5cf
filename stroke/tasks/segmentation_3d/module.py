"""The 3-D segmentation LightningModule: a MONAI network trained on patches, scored on whole
volumes by sliding-window inference with Gaussian blending.

Training sees the patches the datamodule draws (foreground oversampled); validation and
test see each resampled volume whole, through `sliding_window_inference`, and log the
Dice of each lesion class over the epoch's voxels (`val/dice` the mean over classes).
The report at the end of a run (`write_evaluation`) scores volumes in their own geometry,
lesion by lesion (stroke/tasks/segmentation_3d/report.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
from torch import nn
from torchmetrics import MaxMetric, MinMetric

from stroke.errors import ConfigError
from stroke.tasks.base import TaskModule, default_optimizer, plain_values
from stroke.tasks.segmentation_3d.networks import create_volume_network, window_logits

#: `model.loss`: MONAI's Dice (lesion channels) with cross-entropy or focal loss
LOSSES = ("dice_ce", "dice_focal", "dice")


def build_loss(name: str) -> nn.Module:
    """The loss on logits B x K x D x H x W against labels B x 1 x D x H x W."""
    common = {"to_onehot_y": True, "softmax": True, "include_background": False}
    if name == "dice_ce":
        return DiceCELoss(**common)
    if name == "dice_focal":
        return DiceFocalLoss(**common)
    if name == "dice":
        return DiceLoss(**common)
    raise ConfigError(f"model.loss must be one of {list(LOSSES)}, got {name!r}")


def describe(hparams: Mapping[str, Any]) -> str:
    """`dynunet 3d, 5 levels, patch 64x64x32` for reports and logs."""
    plan = hparams["network_plan"]
    patch = "x".join(str(p) for p in plan["patch_size"])
    return f"{hparams['network']} 3d, {len(plan['strides'])} levels, patch {patch}"


def build_network(hparams: Mapping[str, Any]) -> nn.Module:
    """The MONAI network a 3-D segmenter's hyper-parameters describe."""
    return create_volume_network(
        hparams["network"],
        in_channels=int(hparams["input_channels"]),
        out_channels=len(hparams["lesion_classes"]) + 1,
        network_plan=hparams["network_plan"],
        channels=hparams.get("channels"),
        num_res_units=int(hparams.get("num_res_units", 1)),
    )


class VolumeSegmenter(TaskModule):
    """Lesion segmentation of whole scans (experiment=lesion_segmentation_3d).

    Args:
        network: unet, segresnet or dynunet (MONAI).
        lesion_classes, input_channels, network_plan: from the datamodule (its plan).
        channels: widths per level replacing the plan's (e.g. [8, 16, 32, 64] on a CPU).
        num_res_units: residual units per level (unet; dynunet: residual blocks when > 0).
        loss: dice_ce, dice_focal or dice.
        sw_overlap, sw_batch_size: the sliding window of validation and test.
    """

    task = "segmentation_3d"
    train_epoch_metrics: ClassVar[tuple[str, ...]] = ("train/loss",)
    explains_one_class: ClassVar[bool] = False

    def __init__(
        self,
        network: str,
        lesion_classes: Sequence[str] | None = None,
        input_channels: int = 1,
        network_plan: Mapping[str, Any] | None = None,
        channels: Sequence[int] | None = None,
        num_res_units: int = 1,
        loss: str = "dice_ce",
        sw_overlap: float = 0.5,
        sw_batch_size: int = 2,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        monitor: str = "val/dice",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__()
        if not lesion_classes or network_plan is None:
            raise ConfigError(
                "model VolumeSegmenter needs lesion classes and a volume plan from a 3-D "
                "datamodule (data._target_=stroke.tasks.segmentation_3d."
                "VolumeSegmentationDataModule; e.g. experiment=lesion_segmentation_3d)"
            )
        if not 0.0 <= float(sw_overlap) < 1.0:
            raise ConfigError(f"model.sw_overlap must be in [0, 1), got {sw_overlap!r}")
        if not isinstance(sw_batch_size, int) or sw_batch_size < 1:
            raise ConfigError(f"model.sw_batch_size must be an integer >= 1, got {sw_batch_size!r}")
        self.save_hyperparameters(
            {
                "network": network,
                "lesion_classes": list(lesion_classes),
                # output channels: background and each lesion class
                "num_classes": len(lesion_classes) + 1,
                "input_channels": int(input_channels),
                "network_plan": plain_values(network_plan),
                "channels": list(channels) if channels else None,
                "num_res_units": int(num_res_units),
                "loss": loss,
                "sw_overlap": float(sw_overlap),
                "sw_batch_size": int(sw_batch_size),
                "optimizer": plain_values(optimizer) or default_optimizer(),
                "scheduler": plain_values(scheduler),
                "monitor": monitor,
                "monitor_mode": monitor_mode,
            }
        )
        self.lesion_classes = list(lesion_classes)
        self.class_names = list(lesion_classes)
        self.net = build_network(self.hparams)
        self.criterion = build_loss(loss)
        # per lesion class: true positive, false positive, false negative voxels of the epoch
        self.register_buffer("val_counts", torch.zeros(len(lesion_classes), 3), persistent=False)
        self.register_buffer("test_counts", torch.zeros(len(lesion_classes), 3), persistent=False)
        self.val_best = MaxMetric() if monitor_mode == "max" else MinMetric()
        self.register_buffer("train_sums", torch.zeros(1), persistent=False)
        self.train_seen = 0

    def describe(self) -> str:
        return describe(self.hparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def whole_volume_logits(self, volume: torch.Tensor) -> torch.Tensor:
        plan = self.hparams.network_plan
        return window_logits(
            self.net,
            volume,
            plan["patch_size"],
            self.hparams.sw_overlap,
            self.hparams.sw_batch_size,
        )

    # -- steps ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        loss = self.criterion(self(images), labels)
        self.train_sums += loss.detach().float() * len(images)
        self.train_seen += len(images)
        return loss

    def _evaluate_batch(self, batch, split: str) -> None:
        images, labels = batch["image"], batch["label"]
        logits = self.whole_volume_logits(images)
        loss = self.criterion(logits, labels)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        pred = logits.argmax(dim=1)
        true = labels[:, 0].long()
        counts = getattr(self, f"{split}_counts")
        for k in range(1, len(self.lesion_classes) + 1):
            p, t = pred == k, true == k
            counts[k - 1, 0] += (p & t).sum()
            counts[k - 1, 1] += (p & ~t).sum()
            counts[k - 1, 2] += (~p & t).sum()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "test")

    def _epoch_values(self, split: str) -> dict[str, float]:
        """Dice per lesion class over the epoch's voxels (NaN for a class absent from both
        truth and prediction), and their mean over the defined ones."""
        counts = getattr(self, f"{split}_counts")
        counts = self.trainer.strategy.reduce(counts.clone(), reduce_op="sum")
        values = {}
        for k, name in enumerate(self.lesion_classes):
            tp, fp, fn = (float(v) for v in counts[k])
            denominator = 2 * tp + fp + fn
            values[f"{split}/dice/{name}"] = 2 * tp / denominator if denominator else math.nan
        defined = [v for v in values.values() if not math.isnan(v)]
        values[f"{split}/dice"] = sum(defined) / len(defined) if defined else math.nan
        getattr(self, f"{split}_counts").zero_()
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_validation_epoch(self._epoch_values("val"), "val/dice")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_values("test"))

    def on_train_start(self) -> None:
        self.val_best.reset()

    # -- what stroke-train asks of any model ------------------------------------------------
    def write_evaluation(
        self, datamodule, out_dir: Path, config, device, context: Mapping[str, object]
    ) -> dict[str, object]:
        """The volume report of these weights on the datamodule's validation and test scans."""
        # imported on use: the report draws with matplotlib, which loading a model skips
        from stroke.tasks.segmentation_3d.report import evaluate_volumes

        return evaluate_volumes(
            [self.net], datamodule, out_dir, config, device, context, self.hparams
        )
