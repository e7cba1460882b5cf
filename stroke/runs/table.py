"""The table of runs: rows sorted by a metric, columns for swept overrides and metrics."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from stroke.runs.collect import RunRecord, swept_keys

#: Test metrics shown when the user names none, those the runs have: a classifier's, a
#: segmenter's (a joint model has both).
DEFAULT_METRICS = (
    "test/accuracy",
    "test/f1",
    "test/roc_auc",
    "test/weighted_log_loss",
    "test/dice",
    "test/iou",
)


@dataclass
class RunsTable:
    """Column names and one row of cells (raw values) per run, already sorted."""

    columns: list[str]
    rows: list[list[object]]
    runs: list[RunRecord]
    sort_metric: str


def sort_runs(runs: Sequence[RunRecord], metric: str, descending: bool) -> list[RunRecord]:
    """Runs ordered by a metric; runs without it (failed, running) go last, in path order."""
    with_value = [r for r in runs if _finite(r.value(metric))]
    without = [r for r in runs if not _finite(r.value(metric))]
    with_value.sort(key=lambda r: r.value(metric), reverse=descending)
    return with_value + without


def default_descending(metric: str) -> bool:
    """Higher is better, except for losses and errors."""
    return not any(word in metric for word in ("loss", "error"))


def build_table(
    runs: Sequence[RunRecord],
    sort: str = "best",
    metrics: Sequence[str] | None = None,
    descending: bool | None = None,
) -> RunsTable:
    """Rows for `runs`: status, swept overrides, best validation score, metrics, epochs, time."""
    if descending is None:
        descending = default_descending(sort)
    ordered = sort_runs(runs, sort, descending)
    available = {name for run in runs for name in run.metrics}
    shown = list(metrics) if metrics else [m for m in DEFAULT_METRICS if m in available]
    if sort != "best" and sort not in shown:
        shown.append(sort)
    swept = swept_keys(runs)
    monitors = {run.monitor for run in runs if run.monitor}
    best_name = f"best {monitors.pop()}" if len(monitors) == 1 else "best val"
    columns = ["run", "status", *swept, best_name, *shown, "epochs", "wall_time_s"]
    with_error = any(run.error for run in runs)
    if with_error:
        columns.append("error")
    rows = []
    for run in ordered:
        row: list[object] = [run.name, run.status]
        row += [run.overrides.get(key) for key in swept]
        row += [run.best_val, *(run.metrics.get(m) for m in shown), run.epochs, run.wall_time_s]
        if with_error:
            row.append(run.error)
        rows.append(row)
    return RunsTable(columns, rows, ordered, sort)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def format_cell(value: object, column: str) -> str:
    """Human-readable cell: 4 significant digits, durations as 1m23s, blanks for missing."""
    if value is None:
        return "-"
    if column == "wall_time_s" and isinstance(value, int | float):
        minutes, seconds = divmod(round(value), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, str):
        try:  # an override like model.optimizer.lr=0.0003162277660168379
            number = float(value)
        except ValueError:
            return value if len(value) <= 80 else value[:77] + "..."
        return f"{number:.4g}" if "." in value or "e" in value.lower() else value
    return str(value)


def to_markdown(table: RunsTable) -> str:
    """A GitHub-flavoured Markdown table."""
    header = [c if c != "wall_time_s" else "time" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [
            format_cell(v, c).replace("|", "\\|") for v, c in zip(row, table.columns, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: RunsTable) -> str:
    """CSV with full-precision values (for spreadsheets and scripts) and each run's path."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*table.columns, "path"])
    for row, run in zip(table.rows, table.runs, strict=True):
        writer.writerow([*("" if v is None else v for v in row), str(run.path)])
    return out.getvalue()


_STATUS_STYLE = {
    "finished": "green",
    "failed": "bold red",
    "interrupted": "magenta",
    "running": "yellow",
}


def to_rich(table: RunsTable, title: str | None = None):
    """A rich Table for the terminal: status coloured, the sort column highlighted."""
    from rich.table import Table

    rich_table = Table(title=title, header_style="bold", show_lines=False)
    for column in table.columns:
        numeric = column not in ("run", "status", "error")
        sorted_by = column == table.sort_metric or (
            table.sort_metric == "best" and column.startswith("best ")
        )
        style = "bold cyan" if sorted_by else None
        name = "time" if column == "wall_time_s" else column
        rich_table.add_column(
            name, justify="right" if numeric else "left", style=style, overflow="fold"
        )
    status_index = table.columns.index("status")
    for row in table.rows:
        cells = [format_cell(v, c) for v, c in zip(row, table.columns, strict=True)]
        status = cells[status_index]
        cells[status_index] = f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"
        rich_table.add_row(*cells)
    return rich_table


def summary_line(table: RunsTable) -> str:
    """`4 runs: 3 finished, 1 failed, 0 running; sorted by test/accuracy`."""
    counts = {s: sum(r.status == s for r in table.runs) for s in _STATUS_STYLE}
    if not counts["interrupted"]:
        del counts["interrupted"]
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"{len(table.runs)} runs: {parts}; sorted by {table.sort_metric}"
