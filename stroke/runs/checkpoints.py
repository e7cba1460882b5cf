"""The checkpoints a `ckpt_path=` names: a file, a list, a run directory (its best checkpoint)
or a multirun directory (the best checkpoint of every run of one recipe in it)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from stroke.errors import CheckpointError, ConfigError
from stroke.runs.cross_validation import read_fold_run


def _as_list(ckpt_path) -> list[str]:
    if isinstance(ckpt_path, ListConfig):
        ckpt_path = OmegaConf.to_object(ckpt_path)
    if isinstance(ckpt_path, str | Path):
        return [str(ckpt_path)]
    if isinstance(ckpt_path, list | tuple) and ckpt_path:
        return [str(p) for p in ckpt_path]
    raise ConfigError(
        f"ckpt_path={ckpt_path!r}: expected a checkpoint, a list of checkpoints, a run "
        "directory or a multirun directory"
    )


def best_checkpoint_of_run(run_dir: Path) -> Path:
    """The checkpoint a finished run tested (metrics.json's best_model_path), else last.ckpt."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    best = summary.get("best_model_path") or ""
    candidates = [Path(best), run_dir / "checkpoints" / Path(best).name] if best else []
    candidates.append(run_dir / "checkpoints" / "last.ckpt")
    for path in candidates:
        if path.is_file():
            return path
    raise CheckpointError(
        f"run {run_dir} has no checkpoint left (looked for {', '.join(map(str, candidates))})"
    )


def _runs_of(directory: Path) -> list[Path]:
    """The run directories a directory names: itself, or the runs of a multirun directory."""
    if (directory / "metrics.json").is_file():
        return [directory]
    runs = [p.parent for p in directory.glob("*/metrics.json")]
    # job folders 0, 1, ..., 10 in numeric order
    return sorted(
        runs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def checkpoint_paths(ckpt_path) -> list[Path]:
    """Every checkpoint `ckpt_path` names (see the module docstring), in a stable order."""
    paths: list[Path] = []
    for item in _as_list(ckpt_path):
        path = Path(item).expanduser()
        if path.is_file():
            paths.append(path)
            continue
        if not path.is_dir():
            raise CheckpointError(
                f"ckpt_path={item!r} does not exist (expected a .ckpt file, a run directory "
                "or a multirun directory)"
            )
        runs = _runs_of(path)
        if not runs:
            raise CheckpointError(
                f"ckpt_path={item!r} is a directory without finished runs (no metrics.json "
                "in it or in its sub-folders)"
            )
        groups = {read_fold_run(run).group for run in runs}
        if len(groups) > 1:
            raise ConfigError(
                f"ckpt_path={item!r} holds runs of {len(groups)} different settings "
                f"({sorted(' '.join(g) or '(none)' for g in groups)}); an ensemble averages "
                "one recipe: name its checkpoints as a list"
            )
        paths.extend(best_checkpoint_of_run(run) for run in runs)
    return paths
