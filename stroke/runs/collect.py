"""Find run directories under a multirun, study or outputs folder and read what each recorded."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stroke.errors import ConfigError
from stroke.runs.record import FAILED, FINISHED, INTERRUPTED, RUNNING, read_status

#: Files that make a folder a run directory.
_RUN_MARKERS = (".hydra", "metrics.json", "status.json")
#: The line of config.yaml that holds the monitored metric (a top-level key, one line).
_TOP_LEVEL_MONITOR = re.compile(r"^monitor:[^\n]*$", re.M)
#: Folders inside a run that hold no runs: not worth walking (checkpoints can be many GB).
_NOT_RUNS = {"tensorboard", "checkpoints", "csv", "eval", "__pycache__"}


@dataclass
class RunRecord:
    """One run as the table shows it."""

    path: Path
    name: str
    status: str
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    monitor: str | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    error: str | None = None

    @property
    def best_val(self) -> float | None:
        """The best validation score of the monitored metric (its last value as a fallback)."""
        if not self.monitor:
            return None
        return self.metrics.get(f"{self.monitor}_best", self.metrics.get(self.monitor))

    def value(self, metric: str) -> float | None:
        """A metric by name; `best` is the best validation score."""
        return self.best_val if metric == "best" else self.metrics.get(metric)


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory at or below `root` (a run, a multirun, a study or outputs/)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    found = []
    for current, dirs, files in os.walk(root):
        names = set(dirs) | set(files)
        if any(marker in names for marker in _RUN_MARKERS):
            found.append(Path(current))
            dirs.clear()  # a run holds no runs
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _NOT_RUNS)
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    """Sort job folders 2 before 10."""
    return [int(part) if part.isdigit() else part for part in path.parts]


def read_run(run_dir: Path, root: Path | None = None) -> RunRecord:
    """What one run directory recorded; tolerant of missing files and extra keys."""
    run_dir = Path(run_dir)
    name = str(run_dir.relative_to(root)) if root and run_dir != root else run_dir.name
    summary = _read_json(run_dir / "metrics.json") or {}
    status_record = read_status(run_dir) or {}
    status, error = _status(summary, status_record)
    damaged = [name for name in ("status.json", "metrics.json") if _unreadable(run_dir / name)]
    if damaged and status == RUNNING:  # not a run in progress: one whose record is damaged
        status, error = FAILED, f"{' and '.join(damaged)} cannot be read (not JSON)"
    metrics = {
        k: float(v)
        for k, v in (summary.get("metrics") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return RunRecord(
        path=run_dir,
        name=name or ".",
        status=status,
        overrides=read_overrides(run_dir),
        metrics=metrics,
        monitor=_monitor(run_dir),
        epochs=summary.get("epochs"),
        wall_time_s=summary.get("wall_time_s"),
        error=error,
    )


def _status(summary: dict, status_record: dict) -> tuple[str, str | None]:
    """finished / failed / interrupted / running: from status.json, else from metrics.json."""
    status = status_record.get("status")
    if status in (FAILED, INTERRUPTED):
        return status, status_record.get("error")
    if status == FINISHED or (status is None and summary.get("metrics") is not None):
        return FINISHED, None
    if status == RUNNING and process_gone(status_record):
        return FAILED, f"process {status_record.get('pid')} ended without a result (killed?)"
    return RUNNING, None


def process_gone(status_record: dict) -> bool:
    """A run marked running by a process of this machine that no longer exists."""
    pid = status_record.get("pid")
    if status_record.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False  # another machine's run: trust its status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The run's command-line overrides as `key -> value` (`+key=v` counts as `key`)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        items = _load_yaml(path.read_text()) or []
    except (OSError, yaml.YAMLError):
        return {}
    overrides = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        overrides[key.lstrip("+")] = value if sep else "(deleted)"
    return overrides


def _monitor(run_dir: Path) -> str | None:
    config = Path(run_dir) / ".hydra" / "config.yaml"
    try:
        text = config.read_text()
        # the top-level `monitor:` line alone: building the whole config (hundreds of
        # keys) for one value is most of the table's time over a thousand runs
        line = _TOP_LEVEL_MONITOR.search(text)
        return (_load_yaml(line.group(0) if line else text) or {}).get("monitor")
    except (OSError, yaml.YAMLError):
        return None


def _load_yaml(text: str) -> Any:
    """`yaml.safe_load` through libyaml when PyYAML has it: a run's config.yaml parses
    about ten times faster, which is most of the table's time over a thousand runs."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _unreadable(path: Path) -> bool:
    """A file that exists but holds no JSON object (damaged, truncated, another format)."""
    return path.is_file() and not isinstance(_read_json(path), dict)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect_runs(root: Path) -> list[RunRecord]:
    """Every run under `root`, named by its path relative to `root`."""
    root = Path(root)
    return [read_run(run_dir, root) for run_dir in find_run_dirs(root)]


def swept_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value is not the same in every run (the parameters of the sweep)."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def newest_checkpoint(log_dir: str | Path, task: str) -> Path:
    """`checkpoints/last.ckpt` of the newest finished run of preset `task` under `log_dir`
    (`outputs/<task>/runs/...` and its multiruns): how one preset starts from the network
    another trained (`${stroke_newest_checkpoint:${paths.log_dir},<task>}` in a config).
    """
    task_dir = Path(log_dir) / task
    finished = []
    if task_dir.is_dir():
        for run_dir in find_run_dirs(task_dir):
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            if ckpt.is_file() and read_run(run_dir).status == FINISHED:
                finished.append((ckpt.stat().st_mtime, str(ckpt)))
    if not finished:
        raise ConfigError(
            f"model.backbone.weights_path: no finished run of experiment={task} under "
            f"{task_dir} to start from; run `stroke-train experiment={task}` first, or give "
            "model.backbone.weights_path=<a .ckpt or weights file> (null: train from scratch)"
        )
    return Path(max(finished)[1])
