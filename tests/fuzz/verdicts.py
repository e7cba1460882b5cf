"""What a command did with a bad input, in one word, from its exit status, output and files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CLEAR = "clear error"  # non-zero exit, one `error:` line, no traceback
LOUD = "handled loudly"  # exit 0, every promised file, the bad input named somewhere
ACCEPTED = "accepted"  # exit 0, every promised file: the input was valid after all
TRACEBACK = "traceback"  # a traceback on the console (a bug, or a library's message)
UNCLEAR = "unclear error"  # non-zero exit without exactly one `error:` line
SILENT = "silent"  # exit 0 with a promised file missing
HANG = "hang"  # still running at the time limit
VERDICTS = (CLEAR, LOUD, ACCEPTED, TRACEBACK, UNCLEAR, SILENT, HANG)
#: verdicts that fail the harness
FAILURES = (TRACEBACK, UNCLEAR, SILENT, HANG)

_TRACEBACK_MARKS = ("Traceback (most recent call last)", "--- Logging error ---")
#: files a command writes that say what it left out, where a bad input is named
_RECORDS = ("skipped.csv", "predictions.csv", "metrics.json", "train.log", "predict.log")


def verdict(
    returncode: int | None,
    output: str,
    promised: Iterable[Path] = (),
    mentions: str | None = None,
    records: Path | None = None,
) -> str:
    """The verdict of one run: `returncode` None for a run stopped at its time limit;
    `output` its stdout and stderr; `promised` the files an exit 0 must leave; `mentions`
    what a loud handling names (the bad file's name), looked for in the output and in the
    records under `records`."""
    if returncode is None:
        return HANG
    if any(mark in output for mark in _TRACEBACK_MARKS):
        return TRACEBACK
    if returncode != 0:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        return CLEAR if len(errors) == 1 else UNCLEAR
    if any(not Path(p).exists() for p in promised):
        return SILENT
    if mentions and (mentions in output or _recorded(mentions, records)):
        return LOUD
    return ACCEPTED


def _recorded(text: str, folder: Path | None) -> bool:
    if folder is None or not folder.is_dir():
        return False
    for name in _RECORDS:
        for path in folder.rglob(name):
            try:
                if text in path.read_text(errors="replace"):
                    return True
            except OSError:
                continue
    return False
