"""What a run leaves for the table of runs: `status.json`, and hyper-parameters in TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
FINISHED, FAILED, RUNNING = "finished", "failed", "running"

#: Config sections whose values are a run's hyper-parameters in TensorBoard's HPARAMS view.
HPARAM_SECTIONS = ("model", "data", "trainer")
HPARAM_KEYS = ("seed", "monitor", "task_name")


def write_status(run_dir: Path, status: str, **fields: Any) -> Path:
    """Write `<run_dir>/status.json`: running / finished / failed, where and when, and the error."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATUS_FILE
    previous = read_status(run_dir) or {}
    record = {
        "status": status,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": previous.get("started", _now()),
        **({"ended": _now()} if status != RUNNING else {}),
        **fields,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)  # a reader never sees half a file
    return path


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's `status.json`, or None when it has none (or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class RunRecorder:
    """Marks a run running, then finished or failed; in a sweep a failure is recorded, not raised.

    Hydra's launchers re-raise a failed job's exception when the sweeper reads its result,
    which ends the whole sweep. Inside a sweep (`swallow=True`) the exception is logged with
    its traceback, written to `status.json`, and the run returns no objective, so the other
    trials go on. A single run re-raises, so the command exits non-zero.
    """

    def __init__(self, run_dir: Path, swallow: bool) -> None:
        self.run_dir = Path(run_dir)
        self.swallow = swallow
        self.error: str | None = None
        self._write = _is_rank_zero()  # DDP: every rank runs the entry point, one records

    @property
    def failed(self) -> bool:
        return self.error is not None

    def __enter__(self) -> RunRecorder:
        if self._write:
            write_status(self.run_dir, RUNNING)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            if self._write:
                write_status(self.run_dir, FINISHED)
            return False
        self.error = short_error(exc)
        if self._write:
            trace = "".join(traceback.format_exception(exc_type, exc, tb))
            write_status(self.run_dir, FAILED, error=self.error, traceback=trace[-20000:])
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: stop the sweep too
            return False
        if self.swallow:
            log.error("trial failed, the sweep goes on: %s", self.error, exc_info=exc)
            print(f"trial failed: {self.error} (run directory: {self.run_dir})")
        return self.swallow


def short_error(exc: BaseException) -> str:
    """`ValueError: Invalid learning rate: -1`: the root cause in one line, for the table.

    Wrappers such as Hydra's InstantiationException repeat their cause over several lines.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def flat_hparams(cfg: DictConfig, choices: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The run's hyper-parameters as flat `section/key` scalars (what TensorBoard can show)."""
    flat: dict[str, Any] = {}
    for key in HPARAM_KEYS:
        if key in cfg:
            flat[key] = cfg[key]
    for section in HPARAM_SECTIONS:
        if section not in cfg:
            continue
        try:
            values = OmegaConf.to_container(cfg[section], resolve=True)
        except Exception:  # noqa: BLE001 - an unresolvable key must not lose the others
            values = OmegaConf.to_container(cfg[section], resolve=False)
        _flatten(values, section, flat)
    for group, choice in (choices or {}).items():
        if not group.startswith("hydra") and choice is not None:
            flat[f"choice/{group}"] = choice
    return {k: _scalar(v) for k, v in flat.items()}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten(sub, f"{prefix}/{key}", out)
    else:
        out[prefix] = value


def _scalar(value: Any) -> int | float | str | bool:
    if isinstance(value, bool | int | float | str):
        return value
    return "null" if value is None else str(value)


def log_hparams(loggers: Iterable[Any], cfg: DictConfig, metrics: Mapping[str, float]) -> None:
    """Write hyper-parameters and final metrics to TensorBoard's HPARAMS view of this run.

    Metrics are logged as `hp/<name>` (e.g. `hp/test/acc`) so they do not add a point at step 0
    to the training curves of the same name.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    tensorboards = [lg for lg in loggers if isinstance(lg, TensorBoardLogger)]
    if not tensorboards:
        return
    choices = _hydra_choices()
    params = flat_hparams(cfg, choices)
    final = {
        f"hp/{name}": float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }
    for logger in tensorboards:
        logger.log_hyperparams(params, metrics=final)
        logger.experiment.flush()


def _hydra_choices() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return dict(HydraConfig.get().runtime.choices)
    except (ValueError, AttributeError):  # not under Hydra (a test calling train() directly)
        return {}
