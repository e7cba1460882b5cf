"""The files a command's libraries write for it, named when the disk is full.

Our own files go through `stroke.io` (atomic, a StorageError naming the file). Two writers
of every command are not ours: Hydra saves `.hydra/config.yaml`, `hydra.yaml` and
`overrides.yaml` into the run directory before the command's function runs, and logging
writes `<run>/<command>.log`. A full disk makes `write(2)` fail with an OSError that names
no file, so the user read `error: cannot write a file`, or, from logging, a
`--- Logging error ---` traceback for every record. Inside `named_writes()`:

- a failed save of a Hydra file is a StorageError naming it;
- a log file that cannot be written is said once, `warning: cannot write the log <file>:
  <reason>; logging to the console only`, and its handler stops writing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stroke.io import storage_error


@contextmanager
def named_writes() -> Iterator[None]:
    """Hydra's run-directory files and the log files fail naming their file (see module)."""
    with _hydra_saves_named(), _log_files_fail_once():
        yield


@contextmanager
def _hydra_saves_named() -> Iterator[None]:
    """Patches `hydra.core.utils._save_config`, which its `run_job` calls by name; without
    it (another Hydra version) nothing is patched and the error names no file again."""
    try:
        import hydra.core.utils as module
    except ImportError:
        module = None
    original = getattr(module, "_save_config", None)
    if original is None:
        yield
        return

    def save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        try:
            original(cfg, filename, output_dir)
        except OSError as err:
            raise storage_error(Path(output_dir) / filename, err, kept=False) from err

    module._save_config = save_config
    try:
        yield
    finally:
        module._save_config = original


@contextmanager
def _log_files_fail_once() -> Iterator[None]:
    original = logging.FileHandler.handleError

    def handle_error(handler: logging.FileHandler, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):
            original(handler, record)
            return
        reason = os.strerror(err.errno) if err.errno else str(err)
        print(
            f"warning: cannot write the log {handler.baseFilename}: {reason}; "
            "logging to the console only",
            file=sys.stderr,
        )
        handler.emit = lambda record: None  # type: ignore[method-assign]

    logging.FileHandler.handleError = handle_error  # type: ignore[method-assign]
    try:
        yield
    finally:
        logging.FileHandler.handleError = original  # type: ignore[method-assign]
