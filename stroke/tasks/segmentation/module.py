"""The segmentation LightningModule: an smp network, Dice + cross-entropy (or focal) loss,
Dice/IoU and lesion-level metrics, and optionally the encoder's image-classification head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torchmetrics import MaxMetric, MinMetric

from stroke.errors import ConfigError
from stroke.evaluation.epoch_metrics import EpochPredictions
from stroke.evaluation.epoch_metrics import epoch_scores as class_scores
from stroke.tasks.base import TaskModule, default_optimizer, plain_values
from stroke.tasks.segmentation.masks import BACKGROUND
from stroke.tasks.segmentation.metrics import SegmentationCounts, epoch_scores
from stroke.tasks.segmentation.networks import create_segmentation_network

#: `model.loss`: the segmentation loss, from smp and torch.
LOSSES = ("dice_ce", "dice_focal", "dice", "ce")


def build_loss(name: str) -> nn.Module:
    """Dice (smp, multiclass, on all channels) plus cross-entropy or focal loss."""
    if name not in LOSSES:
        raise ConfigError(f"model.loss must be one of {list(LOSSES)}, got {name!r}")
    parts: list[nn.Module] = []
    if name.startswith("dice"):
        parts.append(smp.losses.DiceLoss(smp.losses.MULTICLASS_MODE, from_logits=True))
    if name.endswith("ce"):
        parts.append(nn.CrossEntropyLoss())
    if name.endswith("focal"):
        parts.append(smp.losses.FocalLoss(smp.losses.MULTICLASS_MODE))
    return _SumOfLosses(parts)


class _SumOfLosses(nn.Module):
    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(part(logits, target) for part in self.parts)


class StrokeSegmenter(TaskModule):
    """Lesion segmentation (and, with `joint`, the slice's class) for stroke imaging.

    Every argument is a plain value saved in checkpoints, so `stroke-predict`,
    `stroke-eval` and `stroke-export` rebuild the network from the file alone. The
    output has a channel per class: background, then `lesion_classes`.

    Args:
        architecture: an smp architecture (unet, unetplusplus, fpn, deeplabv3plus...).
        encoder: an smp encoder (resnet18...) or `tu-<timm name>` (tu-resnet10t...).
        pretrained: ImageNet encoder weights, downloaded; weights_path: read from a file.
        lesion_classes: the mask's lesion classes (from the datamodule).
        num_classes, class_names, class_counts: the image classes (from the datamodule);
            used by the joint head.
        joint: add the encoder's classification head; its loss is weighted by
            `classification_weight` and its metrics are the classifier's.
        loss: dice_ce, dice_focal, dice or ce.
        image_size: the input size, checked against the encoder's stride.
    """

    task = "segmentation"

    def __init__(
        self,
        architecture: str,
        encoder: str,
        lesion_classes: Sequence[str] | None = None,
        num_classes: int = 2,
        input_channels: int = 1,
        class_names: Sequence[str] | None = None,
        class_counts: Sequence[int] | None = None,
        image_size: int | None = None,
        pretrained: bool = False,
        weights_path: str | None = None,
        decoder: Mapping[str, Any] | None = None,
        joint: bool = False,
        classification_weight: float = 0.5,
        loss: str = "dice_ce",
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        monitor: str = "val/dice",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__()
        if not lesion_classes:
            raise ConfigError(
                "model StrokeSegmenter needs lesion classes from a segmentation datamodule "
                "(data._target_=stroke.tasks.segmentation.LesionSegmentationDataModule with "
                "data.masks; "
                "e.g. experiment=lesion_segmentation)"
            )
        class_names = list(class_names or [str(i) for i in range(num_classes)])
        decoder = plain_values(decoder) or {}
        self.save_hyperparameters(
            {
                "architecture": architecture,
                "encoder": encoder,
                "lesion_classes": list(lesion_classes),
                "num_classes": num_classes,
                "input_channels": input_channels,
                "class_names": class_names,
                "class_counts": list(class_counts) if class_counts is not None else None,
                "image_size": image_size,
                "pretrained": pretrained,
                "weights_path": weights_path,
                "decoder": decoder,
                "joint": joint,
                "classification_weight": classification_weight,
                "loss": loss,
                "optimizer": plain_values(optimizer) or default_optimizer(),
                "scheduler": plain_values(scheduler),
                "monitor": monitor,
                "monitor_mode": monitor_mode,
            }
        )
        self.lesion_classes = list(lesion_classes)
        self.class_names = class_names
        self.net = build_network(self.hparams)
        _check_input_size(self.net, image_size, encoder)
        self.criterion = build_loss(loss)
        self.class_criterion = nn.CrossEntropyLoss() if joint else None
        outputs = len(self.lesion_classes) + 1
        # the epoch's counts and class predictions, scored by the reports' code at its end
        self.val_metrics = SegmentationCounts(outputs)
        self.test_metrics = SegmentationCounts(outputs)
        self.val_class_metrics = EpochPredictions(num_classes) if joint else None
        self.test_class_metrics = EpochPredictions(num_classes) if joint else None
        self.val_best = MaxMetric() if monitor_mode == "max" else MinMetric()
        self.register_buffer("train_sums", torch.zeros(1), persistent=False)
        self.train_seen = 0

    @property
    def channel_names(self) -> list[str]:
        """The output channels: background, then the lesion classes."""
        return [BACKGROUND, *self.lesion_classes]

    def describe(self) -> str:
        """`unet/resnet18` (`+ classification head` when joint): for reports and logs."""
        return describe(self.hparams)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mask logits B x K x H x W, class logits B x classes or None)."""
        out = self.net(x)
        return (out[0], out[1]) if isinstance(out, tuple | list) else (out, None)

    # -- steps ---------------------------------------------------------------------------
    def _step(self, batch):
        images, masks, labels = batch
        mask_logits, class_logits = self(images)
        loss = self.criterion(mask_logits, masks)
        if class_logits is not None:
            class_loss = self.class_criterion(class_logits, labels)
            loss = loss + self.hparams.classification_weight * class_loss
        return loss, mask_logits, class_logits, masks, labels

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, *_ = self._step(batch)
        self.train_sums += loss.detach().float() * len(batch[0])
        self.train_seen += len(batch[0])
        return loss

    def _evaluate_batch(self, batch, split: str) -> None:
        loss, mask_logits, class_logits, masks, labels = self._step(batch)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        getattr(self, f"{split}_metrics").update(mask_logits.argmax(dim=1), masks)
        if class_logits is not None:
            probs = class_logits.float().softmax(dim=1)
            getattr(self, f"{split}_class_metrics").update(probs, labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, "test")

    def _epoch_values(self, split: str) -> dict[str, float]:
        metrics = getattr(self, f"{split}_metrics")
        values = epoch_scores(*metrics.compute(), split, self.lesion_classes)
        metrics.reset()
        class_metrics = getattr(self, f"{split}_class_metrics")
        if class_metrics is not None:
            values.update(class_scores(*class_metrics.compute(), split, self.class_names))
            class_metrics.reset()
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_validation_epoch(self._epoch_values("val"), "val/dice")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._epoch_values("test"))

    def on_train_start(self) -> None:
        self.val_best.reset()

    # -- what stroke-train asks of any model ----------------------------------------------
    def write_evaluation(
        self, datamodule, out_dir: Path, config, device, context: Mapping[str, object]
    ) -> dict[str, object]:
        """The segmentation report of these weights on the datamodule's test split."""
        # imported on use: the report draws with matplotlib, which loading a model skips
        from stroke.tasks.segmentation.report import evaluate_segmentation

        return evaluate_segmentation(self.net, datamodule, out_dir, config, device, context)


def build_network(hparams: Mapping[str, Any], pretrained: bool | None = None) -> nn.Module:
    """The smp network a segmenter's hyper-parameters describe.

    `pretrained=False` (a checkpoint being loaded: its weights replace any download)
    neither downloads nor reads weights.
    """
    load = pretrained is None
    return create_segmentation_network(
        hparams["architecture"],
        hparams["encoder"],
        num_classes=len(hparams["lesion_classes"]) + 1,
        in_chans=hparams["input_channels"],
        pretrained=bool(hparams["pretrained"]) and load,
        weights_path=hparams["weights_path"] if load else None,
        aux_classes=hparams["num_classes"] if hparams["joint"] else None,
        **dict(hparams.get("decoder") or {}),
    )


def describe(hparams: Mapping[str, Any]) -> str:
    """A segmenter in words: `unet/tu-resnet10t`, `+ classification head` when joint."""
    joint = " + classification head" if hparams["joint"] else ""
    return f"{hparams['architecture']}/{hparams['encoder']}{joint}"


def _check_input_size(net: nn.Module, image_size: int | None, encoder: str) -> None:
    stride = int(net.encoder.output_stride)
    if image_size is not None and image_size % stride:
        fits = ", ".join(str(stride * k) for k in range(1, 9) if stride * k >= 32)
        raise ConfigError(
            f"data.image_size={image_size} is not a multiple of {stride}, the stride of encoder "
            f"{encoder!r}; segmentation needs a multiple (e.g. {fits})"
        )
