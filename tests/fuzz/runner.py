"""Running cases, each command in a process of its own, and counting their verdicts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .cases import Case, Workspace, python_env
from .verdicts import FAILURES, VERDICTS, verdict


@dataclass(frozen=True)
class Outcome:
    case: Case
    verdict: str
    returncode: int | None
    seconds: float
    #: the output's last lines, for a failure's report
    tail: str


def run_case(case: Case, workspace: Workspace, folder: Path) -> Outcome:
    """Prepare the case in `folder`, run its command there and judge what it did."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepared = case.prepare(workspace, folder)
    command = [sys.executable, "-m", f"stroke.cli.{case.command}", *map(str, prepared.args)]
    process = subprocess.Popen(command, cwd=folder, env=python_env(workspace.root),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace",
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=case.timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the command and its loader workers
        output, _ = process.communicate()
        returncode = None
    judged = verdict(returncode, output, prepared.promised, prepared.mentions, folder)
    tail = "\n".join(output.splitlines()[-25:])
    return Outcome(case, judged, returncode, time.perf_counter() - started, tail)


def run_cases(
    cases: Sequence[Case],
    root: Path,
    jobs: int = 2,
    keep: bool = False,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every case, `jobs` at a time, in folders under `root` (removed unless `keep`)."""
    workspace = Workspace(root / "workspace")
    if any(case.kind == "checkpoints" or case.command != "train" for case in cases):
        _ = workspace.checkpoint  # trained once, before the cases that need it run side by side

    def one(index_case: tuple[int, Case]) -> Outcome:
        index, case = index_case
        folder = root / "cases" / f"{index:03d}_{case.id.replace('/', '_')}"
        try:
            outcome = run_case(case, workspace, folder)
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        if progress is not None:
            progress(outcome)
        return outcome

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, enumerate(cases)))


def counts_table(outcomes: Sequence[Outcome]) -> str:
    """Cases per kind and verdict, as a Markdown table with a total row."""
    kinds = sorted({o.case.kind for o in outcomes})
    counts = Counter((o.case.kind, o.verdict) for o in outcomes)
    lines = [
        "| kind | cases | " + " | ".join(VERDICTS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in VERDICTS) + " |",
    ]
    for kind in [*kinds, "total"]:
        row = [counts[(kind, v)] if kind != "total" else sum(counts[(k, v)] for k in kinds)
               for v in VERDICTS]  # fmt: skip
        lines.append(f"| {kind} | {sum(row)} | " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def failures(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.verdict in FAILURES]
