"""Older checkpoints (and the run configs beside them) brought to the current format on load.

Version 0 (main up to 2026-12-02, e.g. 6c8ce0b) had no `stroke` record: the task was a
hyper-parameter of segmenters only (classifiers had none), and the datamodule's state, under
its class name, held the preprocessing record, the classes and a segmenter's mask record.
Classes that moved keep their old `_target_` working in run configs through `MOVED_TARGETS`.

Version 1 (2026-12-03) named the network's input channels `in_chans` in the module's
hyper-parameters, the name `data.in_chans` has for the channels of one slice; version 2
calls them `input_channels` (in_chans x (2k + 1) with k context slices), so `in_chans`
means one thing.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stroke.checkpoint.format import (
    FORMAT_VERSION,
    LEGACY_TASK,
    RECORD_KEY,
    CheckpointRecord,
    split_datamodule_state,
)
from stroke.errors import CheckpointError

#: where version 0 kept the datamodule's state: Lightning keys it by the class name
LEGACY_DATAMODULE_KEYS = ("StrokeDataModule", "LesionSegmentationDataModule")
#: module prefixes of classes that moved, old -> new (run configs name classes by path)
MOVED_TARGETS = {
    "stroke.segmentation.": "stroke.tasks.segmentation.",
    "stroke.module.": "stroke.tasks.classification.module.",
}


def upgrade(checkpoint: dict, path: Path) -> dict:
    """The checkpoint with its `stroke` record in the current format (in place)."""
    record = checkpoint.get(RECORD_KEY)
    if record is None:
        checkpoint[RECORD_KEY] = _record_of_version_0(checkpoint, path).to_dict()
        version = 0
    else:
        version = record.get("format_version") if isinstance(record, dict) else None
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise CheckpointError(
                f"ckpt_path={str(path)!r} has checkpoint format version {version!r}; this "
                f"stroke reads versions 0 to {FORMAT_VERSION} (a newer stroke wrote it: "
                "upgrade stroke)"
            )
    if version < 2:
        _rename_input_channels(checkpoint.get("hyper_parameters"))
    return checkpoint


def _rename_input_channels(hparams) -> None:
    """Versions 0 and 1: the network's input channels were the hyper-parameter `in_chans`."""
    if isinstance(hparams, dict) and "in_chans" in hparams and "input_channels" not in hparams:
        hparams["input_channels"] = hparams.pop("in_chans")


#: hyper-parameters every version-0 stroke module had: a classifier's or a segmenter's
OUR_HPARAMS = ("backbone", "architecture")


def _record_of_version_0(checkpoint: dict, path: Path) -> CheckpointRecord:
    hparams = checkpoint["hyper_parameters"]
    if not any(k in (hparams or {}) for k in OUR_HPARAMS):
        shown = sorted(hparams or {})[:6]
        raise CheckpointError(
            f"ckpt_path={str(path)!r} was written by another Lightning project (no stroke "
            f"record; its hyper-parameters {shown} have no model.backbone): stroke reads the "
            "checkpoints stroke-train writes",
            hint=f"to start a backbone from its network weights: model.backbone.weights_path={path}"
            " (after saving its state_dict)",
        )
    state = next((checkpoint[k] for k in LEGACY_DATAMODULE_KEYS if checkpoint.get(k)), None)
    state = dict(state or {})
    preprocessing, data = split_datamodule_state(state)
    classes = hparams.get("class_names") or state.get("class_names") or []
    return CheckpointRecord(
        task=str(hparams.get("task") or LEGACY_TASK),
        class_names=list(classes),
        preprocessing=preprocessing,
        data=data,
        format_version=0,
    )


def upgrade_run_config(cfg: DictConfig) -> DictConfig:
    """A run's composed config with the `_target_`s of moved classes renamed (a copy)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    return OmegaConf.create(_renamed(container))


def _renamed(node):
    if isinstance(node, dict):
        return {k: _renamed_target(v) if k == "_target_" else _renamed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_renamed(v) for v in node]
    return node


def _renamed_target(target):
    if not isinstance(target, str):
        return target
    for old, new in MOVED_TARGETS.items():
        if target.startswith(old):
            return new + target.removeprefix(old)
    return target
