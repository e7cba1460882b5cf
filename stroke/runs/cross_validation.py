"""Cross-validation summaries: mean and standard deviation of every test metric across folds.

`stroke-train -m data.fold=0,1,2,3,4` writes one run directory per fold, each with its
`metrics.json`; this reads them back and writes `cv_summary.json` and `cv_summary.md`
into the multirun directory (`stroke-cv path=<multirun dir>` does it by hand). Runs that
differ in anything besides the fold (e.g. `model=cnn_bn,resnet18 data.fold=0,1,2,3,4`)
are summarised as separate groups. The
standard deviation is the sample one (n - 1), as cross-validation papers report it.
The same summary is written at the end of every multirun that sweeps `data.fold` by
`CrossValidationSummary`, a Hydra callback (see conf/hydra/default.yaml).

Beside the per-fold mean and spread, every group is also scored once on its pooled
out-of-fold predictions: each fold's `eval/predictions_test.csv` holds the probabilities
of the patients that fold held out, so together the K files hold one prediction for every
patient, each from a model that never saw it. One ROC AUC (and every other metric) over
all of them, with a percentile bootstrap interval that resamples patients, is a steadier
estimate than the mean of K small test splits.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from stroke.errors import DatasetError
from stroke.evaluation.metrics import bootstrap_intervals, classification_scores, with_intervals
from stroke.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SUMMARY_JSON = "cv_summary.json"
SUMMARY_MD = "cv_summary.md"
#: each fold's per-image test probabilities, written by the run's evaluation report
PREDICTIONS_CSV = Path("eval") / "predictions_test.csv"
#: pooled metrics shown in the Markdown summary (every metric is in the JSON)
POOLED_SHOWN = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1")
#: the bootstrap of the pooled out-of-fold metrics (stroke-eval's defaults)
POOLED_BOOTSTRAP = {"n_boot": 1000, "level": 0.95, "seed": 0}


@dataclass(frozen=True)
class FoldRun:
    """One finished run of a cross-validation sweep."""

    run_dir: Path
    fold: int | None
    folds: int | None
    group: tuple[str, ...]  # the run's overrides other than data.fold
    metrics: dict[str, float]
    classes: tuple[str, ...] = ()
    eval_dir: Path | None = None


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
    # a metric a split cannot define (a label without positives) is null in metrics.json
    metrics = {k: float(v) for k, v in summary.get("metrics", {}).items() if v is not None}
    eval_dir = Path(summary["eval_dir"]) if summary.get("eval_dir") else None
    if eval_dir is None or not eval_dir.is_dir():  # a moved run: its own eval/ folder
        eval_dir = run_dir / PREDICTIONS_CSV.parent
    classes = tuple(str(c) for c in summary.get("classes") or ())
    fold = None if fold is None else int(fold)
    return FoldRun(run_dir, fold, folds, group, metrics, classes, eval_dir)


class NoClassProbabilities(DatasetError):
    """A fold's prediction table without class probabilities (a segmentation run's)."""


def read_fold_predictions(run: FoldRun) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(patient ids, class indices, N x K probabilities) of a fold's test split, or None
    when the run wrote no predictions (e.g. `evaluation=null`)."""
    path = (run.eval_dir or run.run_dir / PREDICTIONS_CSV.parent) / PREDICTIONS_CSV.name
    if not path.is_file() or not run.classes:
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [f"prob_{c}" for c in run.classes]
    if rows and not any(c in rows[0] for c in columns):
        raise NoClassProbabilities(
            f"{path} holds no class probabilities ({', '.join(columns)}): pooled out-of-fold "
            "scores are computed for classifiers (a segmenter's folds are summarised per fold)"
        )
    index = {c: i for i, c in enumerate(run.classes)}
    try:
        patients = [row["patient_id"] for row in rows]
        targets = np.array([index[row["label"]] for row in rows], dtype=np.int64)
        probs = np.array([[float(row[c]) for c in columns] for row in rows], dtype=float)
    except (KeyError, ValueError) as err:
        raise DatasetError(
            f"{path}: expected columns patient_id, label and {columns} with the run's classes "
            f"{list(run.classes)} ({type(err).__name__}: {err})"
        ) from err
    return patients, targets, probs.reshape(len(rows), len(columns))


def pooled_out_of_fold(members: list[FoldRun]) -> dict[str, Any]:
    """Every metric over the pooled test predictions of the folds, with patient-bootstrap
    intervals; `skipped` says why there is none (a fold without predictions, ...)."""
    classes = members[0].classes
    if any(r.classes != classes for r in members):
        return {"skipped": "the folds have different classes"}
    parts, missing = [], []
    for run in members:
        try:
            part = read_fold_predictions(run)
        except NoClassProbabilities as err:  # a segmenter's per-slice table
            return {"skipped": str(err)}
        if part is None:
            missing.append(str(run.run_dir))
        else:
            parts.append(part)
    if missing:
        return {"skipped": f"no {PREDICTIONS_CSV} in {', '.join(missing)}"}
    # a patient tested by two folds would be counted twice: never in a patient-grouped K-fold
    patients = [p for part in parts for p in dict.fromkeys(part[0])]
    repeated = len(patients) - len(set(patients))
    if repeated:
        return {"skipped": f"{repeated} patient(s) appear in the test split of several folds"}
    groups = [p for part in parts for p in part[0]]
    targets = np.concatenate([part[1] for part in parts])
    probs = np.concatenate([part[2] for part in parts])

    def statistic(idx: np.ndarray) -> dict[str, float]:
        return classification_scores(targets[idx], probs[idx], classes)

    intervals = bootstrap_intervals(statistic, len(targets), groups, **POOLED_BOOTSTRAP)
    return {
        "n_images": int(len(targets)),
        "n_patients": len(set(groups)),
        "bootstrap": dict(POOLED_BOOTSTRAP, unit="patient"),
        "metrics": with_intervals(statistic(np.arange(len(targets))), intervals),
    }


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
                "pooled_out_of_fold": pooled_out_of_fold(members),
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
        lines += _pooled_markdown(group.get("pooled_out_of_fold") or {})
    lines.append("std: sample standard deviation across folds (n - 1).")
    return "\n".join(lines) + "\n"


def _pooled_markdown(pooled: dict[str, Any]) -> list[str]:
    """The pooled out-of-fold table (or why there is none)."""
    if "skipped" in pooled or not pooled:
        return [f"Pooled out-of-fold predictions: not computed ({pooled.get('skipped')}).", ""]
    boot = pooled["bootstrap"]
    lines = [
        f"Pooled out-of-fold predictions: {pooled['n_images']} images of "
        f"{pooled['n_patients']} patients, each scored by the fold that held it out; "
        f"{boot['level']:.0%} percentile bootstrap over patients ({boot['n_boot']} resamples).",
        "",
        "| pooled metric | value | interval |",
        "| --- | --- | --- |",
    ]
    for name, entry in pooled["metrics"].items():
        if name.split("/")[0] not in POOLED_SHOWN or entry["value"] is None:
            continue
        low, high = entry["ci"]
        interval = "n/a" if low is None else f"{low:.4f} – {high:.4f}"
        lines.append(f"| test/{name} | {entry['value']:.4f} | {interval} |")
    return [*lines, ""]


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
