"""Load a trained segmenter from its checkpoint without running code from the file.

As for classifiers (stroke/tasks/classification/checkpoint.py): `weights_only=True`, the network
rebuilt from plain hyper-parameters, the preprocessing from the datamodule's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from stroke.checkpoint import (
    checkpoint_preprocessing,
    checkpoint_task,
    datamodule_record,
    load_trained_weights,
    read_checkpoint,
)
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.tasks.segmentation.masks import BACKGROUND
from stroke.tasks.segmentation.module import StrokeSegmenter, build_network, describe


@dataclass
class LoadedSegmenter:
    """A segmentation network in eval mode with what a caller needs to feed it and read it."""

    net: nn.Module
    lesion_classes: list[str]
    #: the image classes (a joint model's head predicts them)
    class_names: list[str]
    #: the network's input channels: data.in_chans per slice x (2k + 1) context slices
    input_channels: int
    preprocessing: Preprocessing | None
    joint: bool
    description: str
    path: Path
    #: what mask values meant in training (`LesionMasks.record()`), {} when not recorded
    masks: dict = field(default_factory=dict)

    @property
    def channel_names(self) -> list[str]:
        """The output channels: background, then the lesion classes."""
        return [BACKGROUND, *self.lesion_classes]

    def metadata(self) -> dict[str, object]:
        """What an exported ONNX file carries to stand alone (plain values)."""
        record = {
            "task": StrokeSegmenter.task,
            "lesion_classes": self.lesion_classes,
            "class_names": self.class_names,
            "joint": self.joint,
            "model": self.description,
        }
        if self.preprocessing is not None:
            record.update(self.preprocessing.record())
        return record


def load_segmenter(path: str | Path, checkpoint: dict | None = None) -> LoadedSegmenter:
    """Rebuild the trained network of a segmentation checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    hparams = checkpoint["hyper_parameters"]
    if "lesion_classes" not in hparams:
        raise ConfigError(
            f"ckpt_path={str(path)!r} is a {checkpoint_task(checkpoint)} checkpoint, not a "
            "segmenter (it has no lesion classes)"
        )
    # the weights come from the checkpoint: never download or read pretrained ones again
    net = load_trained_weights(build_network(hparams, pretrained=False), checkpoint, path)
    joint = bool(hparams["joint"])
    return LoadedSegmenter(
        net=net,
        lesion_classes=list(hparams["lesion_classes"]),
        class_names=list(hparams["class_names"]),
        input_channels=int(hparams["input_channels"]),
        preprocessing=checkpoint_preprocessing(checkpoint, path),
        joint=joint,
        description=describe(hparams),
        path=path,
        masks=dict(datamodule_record(checkpoint).get("masks") or {}),
    )
