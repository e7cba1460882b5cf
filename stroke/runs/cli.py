"""`stroke-runs <multirun dir | study dir | outputs/>`: every run side by side, sorted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stroke.runs.collect import collect_runs
from stroke.runs.table import build_table, summary_line, to_csv, to_markdown, to_rich
from stroke.warnings_filter import quiet_third_party_warnings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of `stroke-runs`."""
    parser = argparse.ArgumentParser(
        prog="stroke-runs",
        description="Table of runs: swept overrides, best validation score, test metrics, "
        "epochs, wall time and status (finished, failed, running).",
    )
    parser.add_argument("path", type=Path, help="a multirun or study directory, or outputs/")
    parser.add_argument(
        "--sort",
        default="best",
        help="metric to sort by, e.g. test/acc; 'best' (default) is the best validation score",
    )
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--ascending", dest="descending", action="store_false", default=None)
    order.add_argument("--descending", dest="descending", action="store_true")
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric columns (default: test/acc,test/f1,test/auroc)",
    )
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    parser.add_argument(
        "--plot", type=Path, default=None, help="save the sort metric against each swept parameter"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of runs under a directory; exit 1 when there is none."""
    quiet_third_party_warnings()
    args = parse_args(argv)
    try:
        runs = collect_runs(args.path)
    except FileNotFoundError as err:
        print(f"stroke-runs: {err}", file=sys.stderr)
        return 1
    if not runs:
        print(f"stroke-runs: no run directories under {args.path}", file=sys.stderr)
        return 1
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    table = build_table(runs, sort=args.sort, metrics=metrics, descending=args.descending)
    if args.format == "markdown":
        sys.stdout.write(to_markdown(table))
    elif args.format == "csv":
        sys.stdout.write(to_csv(table))
    else:
        from rich.console import Console

        # piped into a file or a pager, print the table at full width instead of squeezing it
        console = Console() if sys.stdout.isatty() else Console(width=400)
        console.print(to_rich(table, title=str(args.path)))
        console.print(summary_line(table))
    if args.plot:
        from stroke.runs.plot import plot_metric_vs_params

        best_column = next(c for c in table.columns if c.startswith("best "))
        label = best_column if args.sort == "best" else None
        try:
            path = plot_metric_vs_params(runs, args.sort, args.plot, metric_label=label)
        except ValueError as err:
            print(f"stroke-runs: --plot: {err}", file=sys.stderr)
            return 1
        print(f"plot: {path}", file=sys.stderr if args.format != "table" else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
