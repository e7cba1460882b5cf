"""Errors raised for bad user input: each names the file or key and what was expected.

Every command (stroke/cli/errors.py) prints one of these as a single `error: ...` line,
plus `hint: ...` when the error carries a fix, and exits with the class's `exit_code`
(docs/reliability.md lists the codes).
"""

from __future__ import annotations


class StrokeError(Exception):
    """A problem the user can fix; `hint` says how, when the message does not already."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(StrokeError, ValueError):
    """A config value is outside what the framework accepts."""

    exit_code = 2


class DatasetError(StrokeError, ValueError):
    """A dataset on disk does not have the layout, labels or files the config describes."""

    exit_code = 3


class CheckpointError(ConfigError):
    """A checkpoint file is missing, unreadable, unsafe or not one `stroke-train` wrote."""

    exit_code = 4


class StorageError(StrokeError, OSError):
    """A file cannot be written: disk full, read-only or no permission; nothing was lost."""

    exit_code = 5
