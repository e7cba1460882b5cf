"""`stroke-runs plot=<file>`: a metric against each swept parameter, one panel per parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from stroke.io import atomic_write_with
from stroke.runs.collect import RunRecord, swept_keys


def plot_metric_vs_params(
    runs: Sequence[RunRecord], metric: str, out_path: Path, metric_label: str | None = None
) -> Path:
    """Save a figure of `metric` (per finished run) against every swept override."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(runs) or ["run"]
    points = [r for r in runs if _finite(r.value(metric))]
    if not points:
        raise ValueError(f"no run has a value for metric {metric!r}: nothing to plot")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        raw = [r.name if key == "run" else r.overrides.get(key, "(default)") for r in points]
        values = [r.value(metric) for r in points]
        numbers = _as_numbers(raw)
        if numbers is not None:
            ax.scatter(numbers, values)
            positive = [n for n in numbers if n > 0]
            if len(positive) == len(numbers) and max(positive) / min(positive) >= 100:
                ax.set_xscale("log")  # learning rates and weight decays span decades
        else:
            categories = sorted(set(raw))
            ax.scatter([categories.index(v) for v in raw], values)
            ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set_xlabel(key)
        ax.set_ylabel(metric_label or metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric_label or metric} of {len(points)} run(s)")
    fig.tight_layout()
    out_path = Path(out_path)
    try:
        atomic_write_with(out_path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    finally:
        plt.close(fig)
    return out_path


def _as_numbers(values: Sequence[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
