"""Load a trained 3-D segmenter from its checkpoint without running code from the file.

As for the 2-D tasks: `weights_only=True`, the MONAI network rebuilt from plain
hyper-parameters; the volume plan (spacing, patch, intensity) from the datamodule's
record, and the post-processing its run chose on validation (`add_to_checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from stroke.checkpoint import datamodule_record, load_trained_weights, read_checkpoint
from stroke.errors import CheckpointError
from stroke.tasks.segmentation_3d.module import VolumeSegmenter, build_network, describe
from stroke.tasks.segmentation_3d.report import POSTPROCESSING_KEY


@dataclass
class LoadedVolumeSegmenter:
    """A 3-D segmentation network in eval mode with its plan and post-processing."""

    net: nn.Module
    lesion_classes: list[str]
    plan: dict
    input_channels: int
    description: str
    path: Path
    sw_overlap: float = 0.5
    sw_batch_size: int = 2
    #: per lesion class, predicted components under this size (mL) are removed
    min_lesion_ml: list[float] = field(default_factory=list)
    #: no 2-D preprocessing: the plan says how a volume is read
    preprocessing: None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.lesion_classes)

    def metadata(self) -> dict[str, object]:
        """What an exported ONNX file carries to stand alone (plain values)."""
        return {
            "task": VolumeSegmenter.task,
            "lesion_classes": self.lesion_classes,
            "volume_plan": self.plan,
            "model": self.description,
        }


def load_volume_segmenter(
    path: str | Path, checkpoint: dict | None = None
) -> LoadedVolumeSegmenter:
    """Rebuild the trained network of a 3-D segmentation checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    hparams = checkpoint["hyper_parameters"]
    plan = datamodule_record(checkpoint).get("volume_plan")
    if not plan or "network_plan" not in hparams:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} records no volume plan; a 3-D segmenter needs the spacing "
            "and intensity scheme it was trained with (train it with stroke-train)"
        )
    net = load_trained_weights(build_network(hparams), checkpoint, path)
    post = checkpoint.get(POSTPROCESSING_KEY) or {}
    return LoadedVolumeSegmenter(
        net=net,
        lesion_classes=list(hparams["lesion_classes"]),
        plan=dict(plan),
        input_channels=int(hparams["input_channels"]),
        description=describe(hparams),
        path=path,
        sw_overlap=float(hparams["sw_overlap"]),
        sw_batch_size=int(hparams["sw_batch_size"]),
        min_lesion_ml=[float(v) for v in post.get("min_lesion_ml") or []],
    )
