"""The tasks stroke trains, found by name: the one place a new task is registered.

A task is a package of `stroke.tasks` with the same named parts (`TaskParts`): its
LightningModule, how its checkpoint is loaded, its evaluation report (stroke-eval), its
prediction writer (stroke-predict), its ONNX outputs (stroke-export) and its serve part
(stroke-serve). The shared machinery (checkpoint, commands, serving) asks this registry,
never compares task names itself. A checkpoint names its task in its record
(stroke.checkpoint.format); a run chooses it through `model._target_`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stroke.checkpoint import (
    checkpoint_task,  # the registry is importable on its own
    read_checkpoint,
)
from stroke.errors import CheckpointError, ConfigError

#: task name -> the module whose `TASK` holds its parts (imported when first asked for)
TASK_MODULES: dict[str, str] = {
    "classification": "stroke.tasks.classification",
    "segmentation": "stroke.tasks.segmentation",
    "segmentation_3d": "stroke.tasks.segmentation_3d",
    "multilabel": "stroke.tasks.multilabel",
    "multilabel_series": "stroke.tasks.multilabel.series_task",
}
_LOADED: dict[str, TaskParts] = {}


@dataclass(frozen=True)
class TaskParts:
    """What every task provides to the shared commands.

    load(path, checkpoint) -> the trained model in eval mode (with `.net`, `.preprocessing`,
        `.input_channels`, `.path` and `.metadata()` for an ONNX file);
    evaluate(cfg, paths, data_cfg, origin, overrides) -> stroke-eval's result (the report);
    predict(cfg) -> (csv path, files, failures) for stroke-predict;
    onnx_outputs(model) -> the names of the exported model's outputs;
    serve(path, device) -> what stroke-serve holds for the key `serve_key`.
    """

    name: str
    summary: str
    module: type
    load: Callable[[Path, dict], Any]
    evaluate: Callable[..., dict]
    predict: Callable[..., tuple[Path, int, int]]
    onnx_outputs: Callable[[Any], list[str]]
    serve: Callable[..., Any]
    #: stroke-serve's setting that takes this task's checkpoint
    serve_key: str
    #: whether several checkpoints (fold ensembles) can be predicted and evaluated as one
    ensembles: bool = False


def register_task(parts: TaskParts, module: str | None = None) -> TaskParts:
    """Add a task (a plug-in's, or a test's toy task) under `parts.name`."""
    if module is not None:
        TASK_MODULES[parts.name] = module
    _LOADED[parts.name] = parts
    return parts


def unregister_task(name: str) -> None:
    """Remove a task registered at run time (tests)."""
    _LOADED.pop(name, None)
    TASK_MODULES.pop(name, None)


def task_names() -> list[str]:
    """Every registered task."""
    return sorted(set(TASK_MODULES) | set(_LOADED))


def get_task(name: str) -> TaskParts:
    """The parts of task `name` (its package imported on first use)."""
    if name not in _LOADED:
        if name not in TASK_MODULES:
            raise ConfigError(f"unknown task {name!r}; registered tasks: {task_names()}")
        _LOADED[name] = importlib.import_module(TASK_MODULES[name]).TASK
    return _LOADED[name]


def task_of(checkpoint: dict, path: str | Path) -> TaskParts:
    """The task of a checkpoint read by `stroke.checkpoint.read_checkpoint`."""

    name = checkpoint_task(checkpoint)
    try:
        return get_task(name)
    except ConfigError:
        raise CheckpointError(
            f"ckpt_path={str(path)!r} was trained for task {name!r}, which this stroke does not "
            f"know (registered tasks: {task_names()})"
        ) from None


def task_of_checkpoints(paths: Iterable[Path]) -> TaskParts:
    """The one task of several checkpoints (an ensemble): mixing tasks is an error."""

    paths = list(paths)
    # the record only (tensors memory-mapped, not read): the task's loader reads the weights
    tasks = {task_of(read_checkpoint(p, lazy=True), p).name for p in paths}
    if len(tasks) > 1:
        raise ConfigError(f"ckpt_path= mixes checkpoints of tasks {sorted(tasks)}")
    task = get_task(tasks.pop())
    if len(paths) > 1 and not task.ensembles:
        raise ConfigError(f"a {task.name} checkpoint is used alone: give one .ckpt file")
    return task


def task_of_module(module: object) -> TaskParts:
    """The task whose LightningModule `module` is (an instance or a subclass)."""
    for name in task_names():
        task = get_task(name)
        if isinstance(module, task.module):
            return task
    raise ConfigError(f"{type(module).__name__} is the LightningModule of no registered task")
