"""What a run leaves behind: `status.json` for the table of runs, hyper-parameters for loggers."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from stroke.errors import StorageError
from stroke.io import atomic_write_text
from stroke.runs.interrupt import signal_of
from stroke.runs.naming import differing_overrides, swept_keys
from stroke.runs.tensorboard import hparam_columns, metric_columns, write_hparams

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
FINISHED, FAILED, RUNNING = "finished", "failed", "running"
#: stopped by SIGINT / SIGTERM; `signal` and `last_checkpoint` say which and where to resume
INTERRUPTED = "interrupted"

#: Config sections whose values are a run's hyper-parameters in TensorBoard's HPARAMS view.
HPARAM_SECTIONS = ("model", "data", "trainer")
HPARAM_KEYS = ("seed", "monitor", "task_name")


def write_status(run_dir: Path, status: str, **fields: Any) -> Path:
    """Write `<run_dir>/status.json`: running / finished / failed / interrupted, where and
    when, and the error.

    Atomically (stroke.io); on a full disk, where no new file can be written, the record
    (without its traceback) overwrites the existing file in place, so the run still says
    why it failed.
    """
    path = Path(run_dir) / STATUS_FILE
    previous = read_status(run_dir) or {}
    record = {
        "status": status,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": previous.get("started", _now()),
        **({"ended": _now()} if status != RUNNING else {}),
        **fields,
    }
    try:
        atomic_write_text(path, json.dumps(record, indent=2, default=str))
    except StorageError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not _overwrite_in_place(path, record):
            raise
    return path


def _overwrite_in_place(path: Path, record: dict[str, Any]) -> bool:
    """Rewrite an existing file within the blocks it already has (no new space needed)."""
    compact = {k: v for k, v in record.items() if k != "traceback"}
    data = json.dumps(compact, default=str).encode()
    try:
        allocated = path.stat().st_blocks * 512
        if len(data) > allocated:
            return False
        with open(path, "r+b") as fh:
            fh.write(data)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        return False
    return True


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
        signum = signal_of(exc)
        if signum is not None:
            if self._write:
                write_status(self.run_dir, INTERRUPTED, **interruption_fields(exc, signum))
            return False  # a signal stops a sweep too
        if self._write:
            trace = "".join(traceback.format_exception(exc_type, exc, tb))
            write_status(self.run_dir, FAILED, error=self.error, traceback=trace[-20000:])
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: stop the sweep too
            return False
        if self.swallow:  # one line here; the traceback is in status.json
            where = self.run_dir / STATUS_FILE
            log.error("trial failed, the sweep goes on: %s (traceback in %s)", self.error, where)
            print(f"trial failed: {self.error} (traceback in {where})")
        return self.swallow


def interruption_fields(exc: BaseException, signum: int) -> dict[str, Any]:
    """status.json fields of a run a signal stopped: which signal, and what to resume from."""
    import signal

    name = signal.Signals(signum).name
    checkpoint = getattr(exc, "checkpoint", None)
    return {
        "signal": name,
        "error": f"interrupted by {name}",
        "last_checkpoint": str(checkpoint) if checkpoint else None,
    }


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
    """Write the run's hyper-parameters to TensorBoard's HPARAMS view and to MLflow.

    The final metrics are not logged again: TensorBoard's table reads them from the scalars
    the run logged (see `stroke.runs.tensorboard`), MLflow has them already.
    """
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    if not _is_rank_zero():  # DDP: the other ranks' loggers write nothing
        return
    hydra = _hydra_config()
    params = flat_hparams(cfg, _hydra_choices())
    swept = _swept_hparams(cfg, hydra, params)  # adds swept keys `params` lacks
    in_sweep = hydra is not None and bool(swept_keys(hydra))
    columns = hparam_columns(params, swept, keep_rest=not in_sweep)
    # every metric in `metrics` was logged through Lightning: a scalar tag of this run
    logged = [name for name, value in metrics.items() if isinstance(value, int | float)]
    monitor = cfg.get("monitor")
    headline = [cfg.get("optimized_metric"), f"{monitor}_best", monitor]  # the module logs both
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            write_hparams(logger.experiment, params, columns, metric_columns(logged, headline))
        elif isinstance(logger, MLFlowLogger):
            logger.log_hyperparams(params)


def _swept_hparams(cfg: DictConfig, hydra: Any, params: dict[str, Any]) -> list[str]:
    """Flat names of the overrides that set the run apart; added to `params` when missing
    (a key outside the recorded sections, e.g. `callbacks.early_stopping.patience`)."""

    if hydra is None:
        return []
    names = []
    for override in differing_overrides(hydra):
        if override.key.startswith("hydra"):
            continue
        choice = f"choice/{override.key}"
        name = choice if choice in params else override.key.replace(".", "/")
        if name not in params:
            value = OmegaConf.select(cfg, override.key, throw_on_resolution_failure=False)
            if isinstance(value, DictConfig | ListConfig) or value is None:
                continue  # a deleted or nested node: nothing to show in one cell
            params[name] = _scalar(value)
        names.append(name)
    return names


def _hydra_config() -> Any:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _hydra_choices() -> dict[str, str]:
    hydra = _hydra_config()  # None: not under Hydra (a test calling train() directly)
    return dict(hydra.runtime.choices) if hydra is not None else {}
