"""Errors raised for bad user input: each names the file or key and what was expected.

Every command (stroke/cli/errors.py) prints one of these as a single `error: ...` line,
plus `hint: ...` when the error carries a fix, and exits with the class's `exit_code`
(docs/reliability.md lists the codes).
"""

from __future__ import annotations

#: how PyTorch's DataLoader re-raises a worker's exception in the main process: the type
#: rebuilt from one string, `Caught <type> in DataLoader worker process <n>.` + the traceback
_WORKER_PREFIX = "Caught "
_WORKER_MARK = " worker process "
_HINT_NOTE = "hint: "


class StrokeError(Exception):
    """A problem the user can fix; `hint` says how, when the message does not already.

    The hint also travels as a note of the exception (`hint: ...` under the message of a
    printed traceback), so that one raised in a loader worker, which PyTorch sends to the
    main process as the text of its traceback, arrives with both: built from that text,
    the error takes back the original message and hint (`_from_worker`).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        if hint is None and isinstance(message, str) and message.startswith(_WORKER_PREFIX):
            message, hint = _from_worker(message, type(self))
        super().__init__(message)
        self.hint = hint
        if hint:
            self.add_note(_HINT_NOTE + hint)


def _from_worker(text: str, cls: type) -> tuple[str, str | None]:
    """(message, hint) of the original error in a worker's re-raised traceback `text`, or
    the text itself when it is not one."""
    first = text.split("\n", 1)[0]
    final = f"{cls.__module__}.{cls.__qualname__}: "
    at = text.rfind("\n" + final)
    if _WORKER_MARK not in first or at < 0:
        return text, None
    message = text[at + 1 + len(final) :].rstrip("\n")
    message, _, hint = message.partition("\n" + _HINT_NOTE)
    return message, hint or None


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
