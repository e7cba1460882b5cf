"""Cross-validation summaries: mean and standard deviation of every test metric across folds.

`stroke-train -m data.fold=0,1,2,3,4` writes one run directory per fold, each with its
`metrics.json`; this reads them back and writes `cv_summary.json` and `cv_summary.md`
into the multirun directory (`stroke-cv path=<multirun dir>` does it by hand). Runs that
differ in anything besides the fold (e.g. `model=cnn_bn,resnet18 data.fold=0,1,2,3,4`)
are summarised as separate groups. The
standard deviation is the sample one (n - 1), as cross-validation papers report it.
The same summary is written at the end of every multirun that sweeps `data.fold` by
`CrossValidationSummary`, a Hydra callback (see conf/hydra/default.yaml).
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from stroke.errors import DatasetError
from stroke.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SUMMARY_JSON = "cv_summary.json"
SUMMARY_MD = "cv_summary.md"


@dataclass(frozen=True)
class FoldRun:
    """One finished run of a cross-validation sweep."""

    run_dir: Path
    fold: int | None
    folds: int | None
    group: tuple[str, ...]  # the run's overrides other than data.fold
    metrics: dict[str, float]


def read_fold_run(run_dir: Path) -> FoldRun:
    """A run's fold (from metrics.json, else its .hydra config) and its metrics."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    fold, folds = summary.get("fold"), summary.get("folds")
    overrides: list[str] = []
    hydra_dir = run_dir / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
    if fold is None and (hydra_dir / "config.yaml").is_file():
        data = OmegaConf.load(hydra_dir / "config.yaml").get("data") or {}
        fold, folds = data.get("fold"), data.get("folds")
    group = tuple(sorted(o for o in overrides if not o.lstrip("+~").startswith("data.fold=")))
    metrics = {k: float(v) for k, v in summary.get("metrics", {}).items()}
    return FoldRun(run_dir, None if fold is None else int(fold), folds, group, metrics)


def collect_fold_runs(multirun_dir: Path) -> list[FoldRun]:
    """Every run under `multirun_dir` that held out a fold, in directory order."""
    runs = [read_fold_run(p.parent) for p in sorted(Path(multirun_dir).rglob("metrics.json"))]
    return [r for r in runs if r.fold is not None]


def summarize(runs: list[FoldRun], prefix: str = "test/") -> list[dict[str, Any]]:
    """Per group of runs: the folds found and mean/std/min/max of each `prefix` metric."""
    groups: dict[tuple[str, ...], list[FoldRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    result = []
    for group, members in sorted(groups.items()):
        members.sort(key=lambda r: r.fold)
        folds = [r.fold for r in members]
        repeated = sorted({f for f in folds if folds.count(f) > 1})
        if repeated:
            dirs = [str(r.run_dir) for r in members if r.fold in repeated]
            raise DatasetError(f"fold(s) {repeated} appear more than once in one group: {dirs}")
        names = sorted({k for r in members for k in r.metrics if k.startswith(prefix)})
        metrics = {}
        for name in names:
            per_fold = [r.metrics.get(name) for r in members]
            values = [v for v in per_fold if v is not None]
            metrics[name] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "min": min(values),
                "max": max(values),
                "n": len(values),
                "values": per_fold,
            }
        result.append(
            {
                "overrides": list(group),
                "folds": folds,
                "expected_folds": members[0].folds,
                "runs": [str(r.run_dir) for r in members],
                "metrics": metrics,
            }
        )
    return result


def to_markdown(groups: list[dict[str, Any]], multirun_dir: Path) -> str:
    """The summary as Markdown tables: metric, mean ± std, then each fold's value."""
    lines = [f"# Cross-validation summary: `{multirun_dir}`", ""]
    for group in groups:
        title = " ".join(group["overrides"]) or "(no other overrides)"
        lines += [f"## {title}", ""]
        expected = group["expected_folds"]
        found = len(group["folds"])
        lines.append(f"{found} fold(s) found: {', '.join(map(str, group['folds']))}")
        if expected and found != expected:
            lines[-1] += f" (**{expected} expected**)"
        lines.append("")
        header = ["metric", "mean ± std", *[f"fold {f}" for f in group["folds"]]]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for name, m in group["metrics"].items():
            std = "n/a" if m["std"] is None else f"{m['std']:.4f}"
            cells = ["" if v is None else f"{v:.4f}" for v in m["values"]]
            lines.append(f"| {name} | {m['mean']:.4f} ± {std} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("std: sample standard deviation across folds (n - 1).")
    return "\n".join(lines) + "\n"


def write_cv_summary(multirun_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Summarise the fold runs under `multirun_dir`; returns the JSON file written."""
    multirun_dir = Path(multirun_dir)
    if not multirun_dir.is_dir():
        raise FileNotFoundError(f"multirun directory {str(multirun_dir)!r} does not exist")
    runs = collect_fold_runs(multirun_dir)
    if not runs:
        raise DatasetError(
            f"no cross-validation runs under {multirun_dir}: expected run directories with "
            "metrics.json from `stroke-train -m data.fold=0,1,...`"
        )
    groups = summarize(runs)
    out_dir = Path(out_dir) if out_dir else multirun_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"multirun_dir": str(multirun_dir), "groups": groups}
    json_path = out_dir / SUMMARY_JSON
    atomic_write_json(json_path, doc)
    atomic_write_text(out_dir / SUMMARY_MD, to_markdown(groups, multirun_dir))
    return json_path


class CrossValidationSummary(Callback):
    """Hydra callback: after a multirun that swept `data.fold`, write the CV summary."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir() or not collect_fold_runs(sweep_dir):
            return  # not a cross-validation sweep
        try:
            path = write_cv_summary(sweep_dir)
        except (ValueError, OSError) as err:  # a summary must never fail the sweep itself
            log.warning("cross-validation summary not written: %s", err)
            return
        log.info("cross-validation summary: %s", path)
        print(f"cross-validation summary: {path} and {path.with_name(SUMMARY_MD)}")
