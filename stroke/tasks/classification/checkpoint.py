"""A trained classifier rebuilt from its checkpoint, without running code from the file.

`torch.load(..., weights_only=True)` (stroke.checkpoint.read_checkpoint) only unpickles
tensors and plain containers, so a checkpoint from an untrusted source cannot execute
anything. That works because StrokeClassifier saves its hyper-parameters as plain values and
the checkpoint's record holds the preprocessing as plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from stroke.checkpoint import (
    checkpoint_preprocessing,
    checkpoint_record,
    read_checkpoint,
)
from stroke.data.preprocessing import Preprocessing
from stroke.errors import CheckpointError
from stroke.evaluation.attention import ATTENTION_KEY
from stroke.models.trained import trained_backbone


@dataclass
class LoadedClassifier:
    """A backbone in eval mode with what a caller needs to feed it and read its output."""

    net: nn.Module
    class_names: list[str]
    #: the network's input channels: data.in_chans per slice x (2k + 1) context slices
    input_channels: int
    preprocessing: Preprocessing | None
    backbone: dict
    path: Path
    #: the checkpoints of an ensemble (stroke/tasks/classification/ensemble.py); empty for one
    members: tuple[Path, ...] = ()
    #: flip TTA as the run validated and tested it (`model.tta`): what predict and serve use
    #: unless told otherwise (`tta=true|false`)
    tta: bool = False
    #: the attention pooling the run's report fitted (stroke.evaluation.attention), if stored
    attention_pooler: dict | None = None

    def check_matches(self, class_names: Sequence[str], input_channels: int, where: str) -> None:
        """Fail, naming both sides, when data and checkpoint disagree on classes or channels."""
        if list(class_names) != self.class_names or input_channels != self.input_channels:
            raise CheckpointError(
                f"checkpoint {self.path} was trained on classes {self.class_names} with "
                f"{self.input_channels} input channels, but {where} gives classes "
                f"{list(class_names)} with {input_channels}; evaluate it on data with the same "
                "classes (data.classes, data.class_map) and channels (data.in_chans per slice, "
                "data.context_slices)"
            )

    def metadata(self) -> dict[str, object]:
        """What an exported ONNX file carries to stand alone (plain values)."""
        record: dict[str, object] = {
            "task": "classification",
            "class_names": self.class_names,
            "backbone": self.backbone.get("name"),
            "tta": self.tta,
        }
        if self.preprocessing is not None:
            record.update(self.preprocessing.record())
        return record


def load_classifier(path: str | Path, checkpoint: dict | None = None) -> LoadedClassifier:
    """Rebuild the trained backbone of a stroke-train checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    hparams = checkpoint["hyper_parameters"]
    if not isinstance(hparams.get("backbone"), dict):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is a {checkpoint_record(checkpoint).task} checkpoint, "
            "not a classifier (it has no model.backbone)"
        )
    net, channels = trained_backbone(checkpoint, path)
    return LoadedClassifier(
        net=net,
        class_names=list(hparams["class_names"]),
        input_channels=channels,
        preprocessing=checkpoint_preprocessing(checkpoint, path),
        backbone=dict(hparams["backbone"]),
        path=path,
        tta=bool(hparams.get("tta", False)),
        attention_pooler=checkpoint.get(ATTENTION_KEY),
    )
