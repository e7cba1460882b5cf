"""Load a trained classifier from a Lightning checkpoint without running code from the file.

`torch.load(..., weights_only=True)` only unpickles tensors and plain containers, so a
checkpoint from an untrusted source cannot execute anything. That works because
StrokeClassifier saves its hyper-parameters as plain dicts and lists, and the datamodule
records its preprocessing (image size, channels, normalization) as plain values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from stroke.data.preprocessing import Preprocessing
from stroke.errors import CheckpointError, ConfigError
from stroke.models import create_model

log = logging.getLogger(__name__)

#: Key under which Lightning stores StrokeDataModule.state_dict() in a checkpoint.
DATAMODULE_KEY = "StrokeDataModule"
#: Lightning keys a datamodule's state by its class name: the segmentation one's.
SEGMENTATION_DATAMODULE_KEY = "LesionSegmentationDataModule"


@dataclass
class LoadedClassifier:
    """A backbone in eval mode with what a caller needs to feed it and read its output."""

    net: nn.Module
    class_names: list[str]
    in_chans: int
    preprocessing: Preprocessing | None
    backbone: dict
    path: Path
    #: the checkpoints of an ensemble (stroke/inference/ensemble.py); empty for one
    members: tuple[Path, ...] = ()

    def check_matches(self, class_names: Sequence[str], in_chans: int, where: str) -> None:
        """Fail, naming both sides, when data and checkpoint disagree on classes or channels."""
        if list(class_names) != self.class_names or in_chans != self.in_chans:
            raise CheckpointError(
                f"checkpoint {self.path} was trained on classes {self.class_names} with "
                f"in_chans={self.in_chans}, but {where} gives classes {list(class_names)} with "
                f"in_chans={in_chans}; evaluate it on data with the same classes (data.classes, "
                "data.class_map) and channels (data.in_chans)"
            )


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded with weights_only=True (tensors and plain values only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r} does not exist (expected a .ckpt file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names the offending global
        raise CheckpointError(f"ckpt_path={str(path)!r} {_unreadable(err)}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"ckpt_path={str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint"
        )
    missing = [k for k in ("state_dict", "hyper_parameters") if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} is not a stroke-train checkpoint: it has no {missing}"
        )
    return checkpoint


def _unreadable(err: Exception) -> str:
    """Why torch could not load a file, without torch's advice to load it unsafely."""
    text = str(err)
    unsafe = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if unsafe:
        return (
            f"cannot be loaded safely: it asks to unpickle {unsafe.group(1)}, which could run "
            "code from the file (stroke loads checkpoints with weights_only=True)"
        )
    # anything else is a file torch cannot parse (its own text would suggest
    # weights_only=False, which runs code from the file: never say that)
    return (
        "is not a readable PyTorch checkpoint (truncated, or another kind of file; "
        f"torch said {type(err).__name__})"
    )


def checkpoint_task(checkpoint: dict) -> str:
    """`classification` or `segmentation`, from a checkpoint's hyper-parameters."""
    return str(checkpoint["hyper_parameters"].get("task", "classification"))


def datamodule_record(checkpoint: dict) -> dict:
    """The datamodule's state saved in a checkpoint (preprocessing, classes...), or {}."""
    return checkpoint.get(DATAMODULE_KEY) or checkpoint.get(SEGMENTATION_DATAMODULE_KEY) or {}


def trained_net_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict of the LightningModule's `net` in a checkpoint, without the prefix."""
    return {
        k.removeprefix("net."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("net.")
    }


def load_trained_weights(net: nn.Module, checkpoint: dict) -> nn.Module:
    """The LightningModule's `net.` weights of a checkpoint into `net`, put in eval mode."""
    net.load_state_dict(trained_net_state(checkpoint))
    return net.eval()


def load_classifier(path: str | Path) -> LoadedClassifier:
    """Rebuild the trained backbone of a stroke-train checkpoint, in eval mode on the CPU."""
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path)
    if checkpoint_task(checkpoint) != "classification":
        raise ConfigError(
            f"ckpt_path={str(path)!r} is a {checkpoint_task(checkpoint)} checkpoint, not a "
            "classifier (load it with stroke.segmentation.checkpoint.load_segmenter)"
        )
    hparams = checkpoint["hyper_parameters"]
    # the weights come from the checkpoint: never download or read pretrained ones again
    backbone = {**hparams["backbone"], "pretrained": False, "weights_path": None}
    net = create_model(num_classes=hparams["num_classes"], in_chans=hparams["in_chans"], **backbone)
    load_trained_weights(net, checkpoint)
    return LoadedClassifier(
        net=net,
        class_names=list(hparams["class_names"]),
        in_chans=int(hparams["in_chans"]),
        preprocessing=checkpoint_preprocessing(checkpoint, path),
        backbone=dict(hparams["backbone"]),
        path=path,
    )


def run_config_of(ckpt_path: str | Path) -> DictConfig | None:
    """The composed config of the run a checkpoint comes from, or None.

    `<run>/.hydra/config.yaml` for `<run>/checkpoints/x.ckpt`.
    """
    config_path = Path(ckpt_path).expanduser().resolve().parent.parent / ".hydra" / "config.yaml"
    return OmegaConf.load(config_path) if config_path.is_file() else None


def checkpoint_preprocessing(checkpoint: dict, path: Path) -> Preprocessing | None:
    """From the datamodule's record in the checkpoint, else from the run's config."""
    record = datamodule_record(checkpoint)
    if not record:
        run_cfg = run_config_of(path)
        if run_cfg is None or "data" not in run_cfg:
            return None
        record = OmegaConf.to_container(run_cfg.data, resolve=True)
        record = {**record, "dicom_windows": _dicom_windows_of_run(record)}
        log.info("preprocessing of %s read from its run's .hydra/config.yaml", path)
    try:
        return Preprocessing.from_record(record)
    except ConfigError:
        return None


def _dicom_windows_of_run(data: dict) -> list | None:
    """The HU windows of a DICOM run's data config (checkpoints older than the record)."""
    source = data.get("source") or {}
    if not str(source.get("_target_", "")).endswith("DicomSource"):
        return None
    from stroke.data.windowing import resolve_windows, windows_record

    return windows_record(
        resolve_windows(source.get("window", "brain"), source.get("multi_window"))
    )
