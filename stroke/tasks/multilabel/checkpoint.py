"""A trained multi-label classifier rebuilt from its checkpoint (weights_only, on the CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from stroke.checkpoint import (
    checkpoint_preprocessing,
    checkpoint_record,
    read_checkpoint,
)
from stroke.data.preprocessing import Preprocessing
from stroke.errors import CheckpointError
from stroke.models.trained import trained_backbone


@dataclass
class LoadedMultiLabel:
    """The backbone in eval mode, its labels, and what prediction and the report need."""

    net: nn.Module
    class_names: list[str]
    input_channels: int
    preprocessing: Preprocessing | None
    backbone: dict
    path: Path
    #: any_label, enforce_any, log_loss_weights (the model's `report_settings()`)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return f"{self.backbone.get('name')} (multi-label)"

    def metadata(self) -> dict[str, object]:
        """What an exported ONNX file carries to stand alone (plain values)."""
        record: dict[str, object] = {
            "task": "multilabel",
            "class_names": self.class_names,
            "backbone": self.backbone.get("name"),
            **self.settings,
        }
        if self.preprocessing is not None:
            record.update(self.preprocessing.record())
        return record


def load_multilabel(path: str | Path, checkpoint: dict | None = None) -> LoadedMultiLabel:
    """Rebuild the trained network of a multi-label checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    hparams = checkpoint["hyper_parameters"]
    if checkpoint_record(checkpoint).task != "multilabel":
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a {checkpoint_record(checkpoint).task} checkpoint, "
            "not a multi-label classifier"
        )
    net, channels = trained_backbone(checkpoint, path)
    loss = hparams.get("loss") or {}
    return LoadedMultiLabel(
        net=net,
        class_names=list(hparams["class_names"]),
        input_channels=channels,
        preprocessing=checkpoint_preprocessing(checkpoint, path),
        backbone=dict(hparams["backbone"]),
        path=path,
        settings={
            "any_label": (hparams.get("label_counts") or {}).get("any_label"),
            "enforce_any": bool(hparams.get("enforce_any")),
            "log_loss_weights": dict(loss.get("log_loss_weights") or {}),
        },
    )
