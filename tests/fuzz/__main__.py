"""`python -m tests.fuzz [--fast] [--kind K] [--jobs N] [--keep DIR]`: run the harness, print
the counts per kind and verdict, exit 1 when any case ended in a traceback, an unclear
error, silently or in a hang (each such case's last lines are printed)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .cases import all_cases
from .runner import Outcome, counts_table, failures, run_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="only the subset make test runs")
    parser.add_argument("--kind", action="append", help="only cases of this kind (repeatable)")
    parser.add_argument("--name", help="only cases whose id contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="cases run side by side")
    parser.add_argument("--keep", type=Path, help="work here and keep every case's folder")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    options = parser.parse_args(argv)

    cases = [
        c
        for c in all_cases()
        if (not options.fast or c.fast)
        and (not options.kind or c.kind in options.kind)
        and (not options.name or options.name in c.id)
    ]
    if options.list:
        print("\n".join(c.id for c in cases))
        return 0

    def progress(outcome: Outcome) -> None:
        print(f"{outcome.verdict:>14}  {outcome.seconds:5.1f} s  {outcome.case.id}", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stroke-fuzz-") as scratch:
        root = options.keep or Path(scratch)
        outcomes = run_cases(cases, root, options.jobs, options.keep is not None, progress)
    print()
    print(counts_table(outcomes))
    bad = failures(outcomes)
    for outcome in bad:
        print(f"\n== {outcome.verdict}: {outcome.case.id} (exit {outcome.returncode})")
        print(outcome.tail)
    elapsed = time.perf_counter() - started
    print(f"\n{len(outcomes)} cases in {elapsed:.0f} s: {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
