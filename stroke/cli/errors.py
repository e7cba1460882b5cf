"""The error contract of every `stroke-*` command: one line for a user error, a traceback for a bug.

`@command` goes above `@hydra.main`. A user error (a config key or value, a data file, a
checkpoint, a full or read-only disk) prints

    error: <what, which key or file, what was expected>
    hint: <how to fix it>            (when there is a fix)

to stderr and exits with the status of its kind (EXIT_CODES, docs/reliability.md). A
signal exits 128 + its number (130 Ctrl-C, 143 SIGTERM). Anything else is a bug: its
traceback is printed and the status is 1. `HYDRA_FULL_ERROR=1` prints the full traceback
of user errors too (the exit status stays that of the kind).

Hydra catches exceptions itself (`hydra._internal.utils.run_and_report`) and prints a
trimmed traceback, both for config composition (before the command's function runs) and
for the function. With HYDRA_FULL_ERROR=1 it re-raises them instead; `@command` sets it
for the duration of the call, so every exception reaches it, and remembers whether the
user had set it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from stroke.cli.full_disk import named_writes
from stroke.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    StorageError,
    StrokeError,
)
from stroke.runs.interrupt import signal_of, signals_raise
from stroke.runs.verdict import EXIT_SWEEP

log = logging.getLogger("stroke")

EXIT_INTERNAL = 1
EXIT_CONFIG = ConfigError.exit_code
EXIT_DATA = DatasetError.exit_code
EXIT_CHECKPOINT = CheckpointError.exit_code
EXIT_STORAGE = StorageError.exit_code
EXIT_MEMORY = 6
#: exit status -> what it means (docs/reliability.md prints the same table)
EXIT_CODES = {
    0: "success",
    EXIT_INTERNAL: "an internal error (a bug: its traceback is printed), or some inputs failed",
    EXIT_CONFIG: "a config key, value or override is wrong",
    EXIT_DATA: "the data (a folder, a CSV, an image, a DICOM or NIfTI file) is wrong",
    EXIT_CHECKPOINT: "a checkpoint is missing, unreadable, unsafe or not a stroke-train one",
    EXIT_STORAGE: "a file cannot be written (disk full, read-only, no permission)",
    EXIT_MEMORY: "out of memory",
    EXIT_SWEEP: "a multirun ended with a failed trial or without a summary it promised",
    130: "interrupted by SIGINT (Ctrl-C)",
    143: "interrupted by SIGTERM (docker stop, kill, SLURM preemption)",
}

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
#: set beside HYDRA_FULL_ERROR when @command set it, so child processes know the user did not
_FORCED_ENV = "STROKE_FULL_ERROR_FORCED"
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_HYDRA_NOISE = re.compile(r",? ?set env var HYDRA_FULL_ERROR=1 to see chained exception\.?")


@dataclass(frozen=True)
class Failure:
    """What the user is told about an exception, and the exit status."""

    code: int
    message: str
    hint: str | None = None


def one_line(text: object) -> str:
    """Whitespace (newlines, tabs) collapsed: the message fits on one line."""
    return " ".join(_HYDRA_NOISE.sub("", str(text)).split())


def full_error_wanted() -> bool:
    """Whether the user asked for full tracebacks (HYDRA_FULL_ERROR=1 set by them, not us)."""
    return os.environ.get(FULL_ERROR_ENV) == "1" and os.environ.get(_FORCED_ENV) != "1"


# -- classification ------------------------------------------------------------------------
def classify(exc: BaseException) -> Failure | None:
    """The user-facing failure an exception stands for, or None for a bug."""
    for classifier in (_stroke, _hydra, _omegaconf, _lightning, _os, _memory):
        failure = classifier(exc)
        if failure is not None:
            return failure
    return None


def _stroke(exc: BaseException) -> Failure | None:
    if isinstance(exc, StrokeError):
        return Failure(exc.exit_code, one_line(exc), exc.hint)
    return None


def _hydra(exc: BaseException) -> Failure | None:
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        OverrideParseException,
        SearchPathException,
    )

    if isinstance(exc, InstantiationException):
        return _instantiation(exc)
    if isinstance(exc, OverrideParseException):
        first, *rest = str(exc).splitlines() or [""]
        return Failure(EXIT_CONFIG, f"cannot parse an override: {one_line(first)}", _see(rest))
    if isinstance(exc, ConfigCompositionException | SearchPathException):
        return _composition(exc)
    return None


def _see(lines: list[str]) -> str | None:
    text = one_line(" ".join(lines))
    return text[0].lower() + text[1:] if text else None


def _composition(exc: BaseException) -> Failure:
    """`Could not override 'x'` / `Could not find 'model/nope'`, with the cause and options."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    cause = exc.__cause__
    hint = None
    if "Available options" in str(exc):
        start = next(i for i, line in enumerate(lines) if "Available options" in line)
        options = []
        for line in lines[start + 1 :]:
            if not line.startswith(("\t", " ")):
                break
            if not line.strip().startswith("_"):  # _base files are not options
                options.append(line.strip())
        group = re.search(r"Available options in '([^']+)'", lines[start])
        hint = f"choose one of {group.group(1) if group else 'the group'}: {', '.join(options)}"
    elif any(line.startswith("To append") for line in lines):
        hint = _see([line for line in lines if line.startswith("To append")])
        hint = f"{hint} (if the key is new: check its spelling first)"
    message = one_line(first)
    if cause is not None:
        message = f"{message}: {_omegaconf_text(cause)}"
    return Failure(EXIT_CONFIG, message, hint)


#: root causes of a failed `instantiate` that mean the config asked for something impossible
_CONFIG_CAUSES = (TypeError, ValueError, ImportError, AttributeError)


def _instantiation(exc: BaseException) -> Failure | None:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
        inner = _stroke(root) or _omegaconf(root)
        if inner is not None:
            return inner
    if root is exc or not isinstance(root, _CONFIG_CAUSES):
        return None
    text = str(exc)
    target = re.search(r"target '([^']+)'", text)
    key = re.search(r"full_key: (\S+)", text)
    where = key.group(1) if key else (target.group(1) if target else "a config object")
    built = f" ({target.group(1)})" if key and target else ""
    return Failure(
        EXIT_CONFIG,
        f"cannot build {where}{built} from the config: {type(root).__name__}: {one_line(root)}",
        "check the keys and values of that config group (`--cfg job` prints them)",
    )


def _omegaconf_text(exc: BaseException) -> str:
    """An OmegaConf message without its `full_key:` / `object_type=` lines, key first."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    noise = ("full_key:", "object_type=", "reference_type=")
    lines = [ln for ln in lines if not ln.startswith(noise)]
    key = getattr(exc, "full_key", None)
    text = one_line(" ".join(lines))
    return f"{key}: {text}" if key and key not in text else text


def _omegaconf(exc: BaseException) -> Failure | None:
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or one_line(exc).rsplit(" ", 1)[-1]
        return Failure(
            EXIT_CONFIG,
            f"{key} is not set (the config leaves it `???`: it has no default)",
            f"give it on the command line: {key}=...",
        )
    if isinstance(exc, OmegaConfBaseException):
        # a resolver of ours that refused (e.g. stroke_newest_checkpoint): its own line
        # (OmegaConf re-raises it as the context of its own error, not as the cause)
        inner, seen = None, exc
        while inner is None and (seen := seen.__cause__ or seen.__context__) is not None:
            inner = _stroke(seen)
        return inner or Failure(EXIT_CONFIG, f"config: {_omegaconf_text(exc)}")
    return None


def _lightning(exc: BaseException) -> Failure | None:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(exc, MisconfigurationException):
        return Failure(EXIT_CONFIG, f"Lightning: {one_line(exc)}", "check the trainer.* keys")
    return None


def _os(exc: BaseException) -> Failure | None:
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_ERRNOS:
        return None
    name = exc.filename or "a file"
    reason = os.strerror(exc.errno)
    hint = {
        errno.ENOSPC: "free space there, or write elsewhere (hydra.run.dir=..., paths.log_dir=...)",
        errno.EDQUOT: "free space there, or write elsewhere (hydra.run.dir=..., paths.log_dir=...)",
    }.get(exc.errno, "write elsewhere (hydra.run.dir=..., paths.log_dir=...) or fix permissions")
    return Failure(EXIT_STORAGE, f"cannot write {name}: {reason}", hint)


def _memory(exc: BaseException) -> Failure | None:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return Failure(
            EXIT_MEMORY,
            f"out of memory: {one_line(exc).split('. ')[0] or type(exc).__name__}",
            "lower data.batch_size or data.image_size, or use a smaller model",
        )
    return None


# -- reporting -----------------------------------------------------------------------------
def report(failure: Failure, exc: BaseException, command_name: str) -> None:
    """Print the failure (one line, plus its hint) and keep the traceback in the run's log."""
    if full_error_wanted():
        traceback.print_exception(exc)
    print(f"error: {failure.message}", file=sys.stderr)
    if failure.hint:
        print(f"hint: {failure.hint}", file=sys.stderr)
    _to_log_files(logging.ERROR, f"{command_name}: error: {failure.message}", exc)


def _to_log_files(level: int, message: str, exc: BaseException | None) -> None:
    """Log to the run's log file (Hydra's file handler) only: the console has it already."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _interrupted(exc: BaseException, signum: int, command_name: str) -> int:
    import signal as signals

    name = signals.Signals(signum).name
    checkpoint = getattr(exc, "checkpoint", None)
    resume = f"; resume with `{command_name} ... ckpt_path={checkpoint}`" if checkpoint else ""
    message = f"{command_name}: interrupted by {name}{resume}"
    print(message, file=sys.stderr)
    _to_log_files(logging.WARNING, message, None)
    return 128 + signum


F = TypeVar("F", bound=Callable[..., Any])


def command(main: F) -> F:
    """Wrap a command's `hydra.main` function with the error contract (see module docstring)."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        # the error line itself goes to the log file too, which may be on the full disk
        with named_writes():
            return _contract(main, args, kwargs)

    return run  # type: ignore[return-value]


def _contract(main: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run `main` under the error contract: its result, or SystemExit with the status."""
    name = "stroke-" + main.__module__.rsplit(".", 1)[-1]
    kept: list[BaseException] = []
    try:
        with _hydra_reraises(), _job_errors_kept(kept), signals_raise():
            result = main(*args, **kwargs)
        if kept:
            raise kept[0]
        return result
    except SystemExit as exc:
        signum = signal_of(exc)  # Lightning's SIGTERMException is a SystemExit(None)
        if signum is None:
            raise
        raise SystemExit(_interrupted(exc, signum, name)) from None
    except BaseException as exc:
        signum = signal_of(exc)
        if signum is not None:
            raise SystemExit(_interrupted(exc, signum, name)) from None
        failure = classify(exc)
        if failure is None:
            _to_log_files(logging.ERROR, f"{name}: internal error", exc)
            raise  # a bug: Python prints its traceback, the status is 1
        report(failure, exc, name)
        raise SystemExit(failure.code) from None


@contextmanager
def _job_errors_kept(kept: list[BaseException]) -> Iterator[None]:
    """A single run's failure is kept here instead of being re-raised by Hydra, which first
    prints `Error executing job with overrides: [...]`: the user gets one line, not two.

    Patches the `run_job` that Hydra's single-run path (`hydra._internal.hydra`) calls; sweeps
    use their launchers' own and keep Hydra's behaviour. Without that name (another Hydra
    version) nothing is patched and the extra line comes back.
    """
    try:
        import hydra._internal.hydra as module
    except ImportError:
        module = None
    original = getattr(module, "run_job", None)
    if original is None:
        yield
        return

    def run_job(*args: Any, **kwargs: Any) -> Any:
        from hydra.core.utils import JobStatus

        ret = original(*args, **kwargs)
        if ret.status == JobStatus.FAILED:
            kept.append(ret._return_value)
            ret.status, ret.return_value = JobStatus.COMPLETED, None
        return ret

    module.run_job = run_job
    try:
        yield
    finally:
        module.run_job = original


class _hydra_reraises:  # noqa: N801 - used as a context manager
    """HYDRA_FULL_ERROR=1 for the block, so Hydra re-raises instead of printing."""

    def __enter__(self) -> None:
        self._saved = {k: os.environ.get(k) for k in (FULL_ERROR_ENV, _FORCED_ENV)}
        if os.environ.get(FULL_ERROR_ENV) != "1":
            os.environ[FULL_ERROR_ENV] = "1"
            os.environ[_FORCED_ENV] = "1"

    def __exit__(self, *exc_info: object) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
