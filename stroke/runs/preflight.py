"""Checks before training: what would otherwise fail deep inside Lightning or PyTorch.

Each raises a ConfigError / DatasetError / CheckpointError / StorageError naming the key
or file, before any epoch runs: a non-numeric `trainer.max_epochs`, a batch of one image
through batch norm, a monitor on an empty validation split, a resume checkpoint that is
not a stroke-train one, a run directory that cannot hold a checkpoint.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

import lightning as L
from hydra.utils import get_class
from torch import nn

from stroke.checkpoint import read_checkpoint
from stroke.data.settings import DATA_CONSTRAINTS
from stroke.errors import CheckpointError, ConfigError, DatasetError
from stroke.io import check_writable
from stroke.parameters import TRAINING, check

log = logging.getLogger(__name__)

#: Fewer validation patients than this in a class make the best epoch partly luck.
SMALL_VALIDATION_PATIENTS = 10

# -- values against the signature they are passed to ---------------------------------------
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_arguments(target: Any, values: Mapping[str, Any], key: str) -> None:
    """Raise a ConfigError naming `<key>.<name>` for a plain value whose type the annotation
    of `target`'s parameter rules out (e.g. `trainer.max_epochs=abc`). Values of types the
    check does not understand pass: the callee still validates them."""
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            raise ConfigError(
                f"{key}.{name}={value!r}: expected {_describe(hints[name])}",
                hint=f"give a value of that type, e.g. {key}.{name}=... on the command line",
            )


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _matches(value: Any, annotation: Any) -> bool:
    for option in _alternatives(annotation):
        origin = typing.get_origin(option)
        if option is Any or option is type(None) and value is None:
            return True
        if origin is Literal:
            if value in typing.get_args(option):
                return True
            continue
        if option is bool:
            if isinstance(value, bool):
                return True
            continue
        if option in (int, float):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and (option is float or isinstance(value, int)):
                return True
            continue
        if option is str:
            if isinstance(value, str):
                return True
            continue
        if option is not type(None):
            return True  # a type this check does not model (lists, timedelta, classes...)
    return False


def _describe(annotation: Any) -> str:
    parts = []
    for option in _alternatives(annotation):
        if option is type(None):
            parts.append("null")
        elif typing.get_origin(option) is Literal:
            parts.extend(repr(v) for v in typing.get_args(option))
        else:
            parts.append(_NAMES.get(option, getattr(option, "__name__", str(option))))
    return " or ".join(dict.fromkeys(parts))


def check_trainer_config(trainer_cfg: Mapping[str, Any]) -> None:
    """`trainer.*` values against lightning.Trainer's signature, before it is built."""
    values = {k: v for k, v in trainer_cfg.items() if not str(k).startswith("_")}
    check_arguments(L.Trainer, values, "trainer")


# -- data against the model and the monitor ------------------------------------------------
def has_batch_norm(net: nn.Module) -> bool:
    """Whether training mode needs more than one value per channel (batch norm layers)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def check_batches(datamodule, model: nn.Module, model_name: str) -> None:
    """A batch-norm network cannot train on batches of one image (PyTorch's "Expected more
    than 1 value per channel"): refuse data.batch_size=1 or a training split of one image."""
    if not has_batch_norm(model):
        return
    train_size = len(datamodule.datasets["train"])
    if datamodule.batch_size == 1:
        raise ConfigError(
            f"data.batch_size=1 with model {model_name!r}, which has batch norm: batch norm "
            "needs at least 2 images per training batch",
            hint="use data.batch_size=2 or more, or a model without batch norm (model=cnn_small)",
        )
    if train_size == 1:
        raise DatasetError(
            f"the training split holds 1 image: model {model_name!r} has batch norm, which "
            "needs at least 2 per batch",
            hint="add images, or lower data.val_fraction / data.test_fraction",
        )


def check_validation(datamodule, monitor: str | None, trainer_cfg: Mapping[str, Any]) -> None:
    """The monitored metric of an empty validation split would never exist: Lightning's
    early stopping and checkpointing then fail after the first epoch with their own words."""
    if not monitor or not str(monitor).startswith("val/"):
        return
    if float(trainer_cfg.get("limit_val_batches", 1.0) or 0) == 0:
        return
    if len(datamodule.datasets["val"]) == 0:
        raise DatasetError(
            f"the validation split of {datamodule.source!r} is empty, so monitor={monitor} "
            f"(best checkpoint, early stopping) has nothing to score "
            f"(data.val_fraction={datamodule.splits.val_fraction}, "
            f"{len(datamodule.samples)} images, "
            f"{len({s.patient_id for s in datamodule.samples})} patients)",
            hint="raise data.val_fraction, add patients, or give a val/ folder (data=presplit)",
        )


def small_validation_warning(
    samples, class_names, monitor: str | None, classes_of=None
) -> str | None:
    """A line when the validation split that picks the best checkpoint holds fewer than
    SMALL_VALIDATION_PATIENTS patients of some class (None otherwise). `classes_of(sample)`:
    the classes a sample counts for (its label; a multi-label datamodule's positives)."""
    if not monitor or not str(monitor).startswith("val/"):
        return None
    classes_of = classes_of or (lambda sample: {sample.label})
    patients: dict[str, set[str]] = {c: set() for c in class_names}
    for s in samples:
        for c in classes_of(s) if s.split == "val" else ():
            if c in patients:
                patients[c].add(s.patient_id)
    if not any(patients.values()):
        return None
    thin = {c: len(p) for c, p in patients.items() if len(p) < SMALL_VALIDATION_PATIENTS}
    if not thin:
        return None
    counts = ", ".join(f"{n} of class {c!r}" for c, n in thin.items())
    return (
        f"the validation split that picks the best checkpoint (monitor={monitor}) holds only "
        f"{counts} (fewer than {SMALL_VALIDATION_PATIENTS} patients): the best epoch is "
        "partly luck. Cross-validate (stroke-train -m data.fold=0,1,2,3,4), select on the "
        "loss (monitor=val/loss monitor_mode=min) or average the weights "
        "(weight_averaging=ema or swa); see docs/training.md#small-data"
    )


# -- resuming --------------------------------------------------------------------------------
#: What Lightning needs in a checkpoint to continue training, beside the weights.
RESUME_KEYS = ("state_dict", "optimizer_states", "loops", "epoch", "global_step")


def check_resume_checkpoint(ckpt_path: str | Path | None) -> dict | None:
    """The checkpoint to resume from, loaded safely: a stroke-train training checkpoint.

    Lightning's own message for a foreign file suggests `weights_only=False`, which would
    run code from the file: never do that.
    """
    if not ckpt_path:
        return None

    checkpoint = read_checkpoint(ckpt_path)
    missing = [k for k in RESUME_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path={str(ckpt_path)!r} cannot resume training: it has no {missing} "
            "(weights only, or written by another program)",
            hint="resume from a stroke-train run's checkpoints/last.ckpt; to start from these "
            "weights use model.backbone.weights_path= instead",
        )
    return checkpoint


def check_resume_classes(checkpoint: dict | None, ckpt_path, class_names: list[str]) -> None:
    """A resumed run trains on the classes its checkpoint was trained on."""
    if checkpoint is None:
        return
    trained = list(checkpoint["hyper_parameters"].get("class_names") or [])
    if trained and trained != list(class_names):
        raise CheckpointError(
            f"ckpt_path={str(ckpt_path)!r} was trained on classes {trained}, but the data "
            f"gives {list(class_names)}; resume on the same data (data.*) it was trained on"
        )


def check_run_directory(run_dir: Path, model: nn.Module) -> None:
    """The run directory accepts files and has room for a checkpoint (with optimizer state)."""
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    # weights + two Adam moments, twice (best and last checkpoints), plus a margin
    check_writable(run_dir, needed_bytes=6 * parameters + 16 * 2**20)


def model_name(model_cfg) -> str:
    """What a message calls the model: a classifier's backbone, a segmenter's architecture."""
    backbone = model_cfg.get("backbone")
    if backbone is not None and backbone.get("name"):
        return str(backbone.name)
    if model_cfg.get("architecture"):
        return f"{model_cfg.architecture} ({model_cfg.get('encoder')})"
    return str(model_cfg.get("_target_", "the model"))


# -- all of it, in the order stroke-train needs it -----------------------------------------
def check_config(cfg, ckpt_path: str | None = None) -> dict | None:
    """What the config alone shows, before any data is read (seconds, not a cache build).

    Returns the checkpoint to resume from, already read safely (or None)."""
    if cfg.get("trainer"):
        check_trainer_config(cfg.trainer)
    check(cfg, training_constraints(cfg.get("data")))
    return check_resume_checkpoint(ckpt_path) if cfg.get("train", True) else None


def training_constraints(data_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every declared constraint of stroke-train's keys, dotted: the model, optimizer,
    trainer and evaluation groups' (stroke.parameters) and the data group's: the settings
    groups' of the 2-D datamodule, or the `CONSTRAINTS` a datamodule class declares itself
    (the 3-D one, whose keys are others)."""
    return {**TRAINING, **{f"data.{key}": c for key, c in data_constraints(data_cfg).items()}}


def data_constraints(data_cfg: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The declared constraints of the `data.*` keys of the datamodule `data_cfg` builds."""
    target = (data_cfg or {}).get("_target_") if isinstance(data_cfg, Mapping) else None
    if target:
        try:
            declared = getattr(get_class(str(target)), "CONSTRAINTS", None)
        except Exception:  # a bad _target_ is reported where the datamodule is built
            declared = None
        if declared is not None:
            return declared
    return DATA_CONSTRAINTS


def checkpoint_monitor(cfg) -> str | None:
    """The metric that picks the best checkpoint: the checkpoint callback's own monitor
    (`callbacks.model_checkpoint.monitor`, null: the last epoch), else `monitor`."""
    callbacks = cfg.get("callbacks") or {}
    if "model_checkpoint" not in callbacks:
        return cfg.get("monitor")
    return (callbacks.get("model_checkpoint") or {}).get("monitor")


def check_run(cfg, datamodule, model, checkpoint: dict | None = None) -> None:
    """What needs the data and the model, before the first epoch."""
    check_batches(datamodule, model, model_name(cfg.model))
    if cfg.get("train", True):
        check_validation(datamodule, cfg.get("monitor"), cfg.get("trainer") or {})
        warning = small_validation_warning(
            getattr(datamodule, "samples", []),
            getattr(datamodule, "class_names", []),
            checkpoint_monitor(cfg),
            getattr(datamodule, "classes_of", None),
        )
        if warning:
            log.warning("data: %s", warning)
        check_resume_classes(checkpoint, cfg.get("ckpt_path"), datamodule.class_names)
    check_run_directory(Path(cfg.paths.output_dir), model)
