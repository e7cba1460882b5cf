"""The last word of a multirun: how many trials finished and failed, and whether every file
the sweep promised was written (`SweepVerdict`, a Hydra callback; conf/hydra/default.yaml).

Hydra turns an exception inside a callback into a warning and a multirun exits 0 whatever
its trials did, so a user scrolling back sees success. This callback prints one tally line,

    4 trials: 3 finished, 1 failed (see outputs/.../1/status.json)

and exits with status 7 when a trial failed (unless `sweep.fail_on_trial_error=false`, which
keeps 0 but still prints the tally) or when a callback of ours could not write a file it
promised (`promise_failed`, e.g. the cross-validation summary). It must run last: Hydra
calls the end callbacks in reverse order, so it is listed first.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from stroke.runs.collect import process_gone
from stroke.runs.record import FAILED, FINISHED, INTERRUPTED, RUNNING, STATUS_FILE, read_status

log = logging.getLogger(__name__)

#: the exit status of a multirun with failed trials or a missing promised file
EXIT_SWEEP = 7
#: a trial marked running whose process on this machine is gone (killed, out of memory)
ENDED_WITHOUT_RESULT = "ended without a result"
#: what fails a multirun; `running` (another process's trial of a shared study) does not
NOT_FINISHED = (FAILED, INTERRUPTED, ENDED_WITHOUT_RESULT, "unreadable")
#: files our callbacks promised but could not write in this process: (path, why)
_BROKEN_PROMISES: list[tuple[str, str]] = []


def promise_failed(path: str | Path, why: str) -> None:
    """Record that a file the sweep promised (a summary) is missing: the multirun fails."""
    _BROKEN_PROMISES.append((str(path), why))


def trial_statuses(sweep_dir: Path, since: float = 0.0) -> dict[Path, str]:
    """Each trial directory under `sweep_dir` (one holding status.json) and its status;
    `since`: only trials written from then on (this multirun's, not a resumed study's past)."""
    statuses = {}
    for path in sorted(sweep_dir.rglob(STATUS_FILE)):
        if path.stat().st_mtime < since:
            continue
        record = read_status(path.parent) or {}
        status = str(record.get("status") or "unreadable")
        if status == RUNNING:  # another process's trial of a shared study, or a dead one
            status = ENDED_WITHOUT_RESULT if process_gone(record) else RUNNING
        statuses[path.parent] = status
    return statuses


def tally(statuses: dict[Path, str]) -> str:
    """`4 trials: 3 finished, 1 failed (see <dir>/status.json)`."""
    counts = Counter(statuses.values())
    parts = [f"{counts[FINISHED]} finished"] + [
        f"{n} {status}" for status, n in sorted(counts.items()) if status != FINISHED
    ]
    line = f"{len(statuses)} trial(s): " + ", ".join(parts)
    failed = [d for d, s in statuses.items() if s in NOT_FINISHED]
    if failed:
        line += f" (see {failed[0] / STATUS_FILE}" + (" and the others'" if len(failed) > 1 else "")
        line += ")"
    return line


class SweepVerdict(Callback):
    """Hydra callback: print the trials' tally; exit 7 on a failed trial or a broken promise.

    Only this multirun's trials count: re-running an Optuna study (or a crashed grid) does
    not fail again on a trial an earlier process left failed.
    """

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file times have coarse resolution on some disks

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        statuses = trial_statuses(sweep_dir, self.started) if sweep_dir.is_dir() else {}
        if statuses:
            line = tally(statuses)
            log.info("sweep: %s", line)
            print(f"sweep: {line}")
        failed = sum(1 for s in statuses.values() if s in NOT_FINISHED)
        strict = bool((config.get("sweep") or {}).get("fail_on_trial_error", True))
        problems = []
        if failed and strict:
            problems.append(
                f"{failed} of {len(statuses)} trial(s) did not finish "
                "(sweep.fail_on_trial_error=false keeps the exit status 0)"
            )
        problems += [f"{path} was not written: {why}" for path, why in _BROKEN_PROMISES]
        _BROKEN_PROMISES.clear()
        if problems:
            print(f"error: {'; '.join(problems)}")
            raise SystemExit(EXIT_SWEEP)  # not an Exception: Hydra lets it end the process
