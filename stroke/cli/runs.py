"""`stroke-runs <multirun dir | study dir | outputs/>` (or `path=...`): the runs side by side.

Columns: the swept overrides, the best validation score, test metrics, epochs, wall time
and status (finished, failed, running). Exits 1 when the folder holds no run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from stroke.cli.errors import command
from stroke.cli.positional import positional_path
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.runs.collect import collect_runs
from stroke.runs.plot import plot_metric_vs_params
from stroke.runs.table import build_table, summary_line, to_csv, to_markdown, to_rich
from stroke.warnings_filter import quiet_third_party_warnings

FORMATS = ("table", "markdown", "csv")
ORDERS = (None, "ascending", "descending")


def _metrics(value: object) -> list[str] | None:
    """`metrics=[test/f1,test/accuracy]` or `metrics="test/f1,test/accuracy"`, or None."""
    if value is None:
        return None
    items = OmegaConf.to_object(value) if isinstance(value, ListConfig) else str(value).split(",")
    return [str(m).strip() for m in items if str(m).strip()]


def _check_choices(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r}; expected one of {list(FORMATS)}")
    if cfg.order not in ORDERS:
        raise ConfigError(f"order={cfg.order!r}; expected one of {list(ORDERS)}")


def print_table(cfg: DictConfig) -> int:
    """Print the table of the runs under `cfg.path`; returns the exit status."""
    _check_choices(cfg)
    path = Path(cfg.path)
    try:
        runs = collect_runs(path)
    except FileNotFoundError as err:
        raise ConfigError(f"path={str(path)!r}: {err}") from err
    if not runs:
        print(f"stroke-runs: no run directories under {path}", file=sys.stderr)
        return 1
    descending = None if cfg.order is None else cfg.order == "descending"
    table = build_table(runs, sort=cfg.sort, metrics=_metrics(cfg.metrics), descending=descending)
    if cfg.format == "markdown":
        sys.stdout.write(to_markdown(table))
    elif cfg.format == "csv":
        sys.stdout.write(to_csv(table))
    else:
        from rich.console import Console

        # piped into a file or a pager, print the table at full width instead of squeezing it
        console = Console() if sys.stdout.isatty() else Console(width=400)
        console.print(to_rich(table, title=str(path)))
        console.print(summary_line(table))
    if cfg.plot:
        _plot(runs, table, cfg)
    return 0


def _plot(runs, table, cfg: DictConfig) -> None:

    best_column = next(c for c in table.columns if c.startswith("best "))
    label = best_column if cfg.sort == "best" else None
    try:
        path = plot_metric_vs_params(runs, cfg.sort, Path(cfg.plot), metric_label=label)
    except ValueError as err:
        raise ConfigError(f"plot={cfg.plot!r}: {err}") from err
    print(f"plot: {path}", file=sys.stderr if cfg.format != "table" else sys.stdout)


@command
@positional_path("path")
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="runs")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-runs`."""
    quiet_third_party_warnings()
    status = print_table(cfg)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
