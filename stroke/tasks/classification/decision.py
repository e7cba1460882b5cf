"""How the server turns probabilities into a decision: the run's validation threshold, or argmax.

`stroke-train` writes `stroke-eval`'s report of its best checkpoint into `<run>/eval/`;
its `metrics.json` holds the operating point chosen on the validation split for the
positive class of a binary task, per image and per patient aggregation. The server
applies that threshold when the report scored the very checkpoint being served, and the
most probable class otherwise, and says which.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stroke.errors import ConfigError
from stroke.inference.predictor import decide

log = logging.getLogger(__name__)

#: What `threshold=` accepts besides a number.
THRESHOLD_MODES = ("auto", "argmax")


@dataclass(frozen=True)
class DecisionRule:
    """A threshold on P(positive) for binary tasks (image and patient level), else argmax."""

    classes: list[str]
    threshold: float | None = None
    #: threshold per patient aggregation (`max`, `mean`), from the same report
    patient_thresholds: dict[str, float] = field(default_factory=dict)
    #: one sentence saying where the rule comes from (the page shows it)
    source: str = "most probable class (argmax)"
    #: how the threshold was chosen and what it achieved on validation
    chosen_on_validation: dict[str, object] | None = None

    @property
    def rule(self) -> str:
        """`threshold` or `argmax`."""
        return "argmax" if self.threshold is None else "threshold"

    def decide(self, probs: np.ndarray) -> int:
        """The decided class index of one image."""
        return decide(probs, self.threshold)

    def patient_threshold(self, aggregation: str) -> float | None:
        """The patient-level threshold for an aggregation; None: argmax."""
        if self.threshold is None:
            return None
        return self.patient_thresholds.get(aggregation)

    def series_threshold(self, aggregation: str) -> tuple[float | None, str]:
        """The threshold for a series aggregated by `aggregation` (None: argmax), and why."""
        if self.threshold is None:
            return None, "argmax"
        patient = self.patient_threshold(aggregation)
        if patient is not None:
            return patient, f"patient level ({aggregation}), chosen on validation"
        return self.threshold, "image level (the evaluation had no patient-level threshold)"

    def card(self) -> dict[str, object]:
        """Plain values for the model card."""
        return {
            "rule": self.rule,
            "threshold": self.threshold,
            "positive_class": self.classes[1] if self.threshold is not None else None,
            "patient_thresholds": dict(self.patient_thresholds),
            "source": self.source,
            "chosen_on_validation": self.chosen_on_validation,
        }


def eval_metrics_of(ckpt_path: str | Path) -> Path:
    """Where `stroke-train` puts the evaluation of a checkpoint `<run>/checkpoints/x.ckpt`."""
    return Path(ckpt_path).expanduser().resolve().parent.parent / "eval" / "metrics.json"


def decision_rule(
    classes: list[str],
    ckpt_path: str | Path,
    threshold: float | str | None = "auto",
    eval_metrics: str | Path | None = None,
) -> DecisionRule:
    """The rule `threshold=` asks for: a number, `argmax` (or null), or `auto` (the run's).

    `auto` reads `eval_metrics` when given, else the checkpoint's `<run>/eval/metrics.json`.
    """
    if threshold is None or threshold == "argmax":
        return DecisionRule(classes, source="most probable class (argmax): threshold=argmax")
    if threshold != "auto":
        return _fixed_threshold(classes, threshold)
    if len(classes) != 2:
        return DecisionRule(
            classes,
            source=(
                "most probable class (argmax): a multi-class model; stroke-eval's operating "
                "points are one class against the rest"
            ),
        )
    explicit = eval_metrics is not None
    path = Path(eval_metrics).expanduser() if explicit else eval_metrics_of(ckpt_path)
    if not path.is_file():
        if explicit:
            raise ConfigError(
                f"eval_metrics={str(path)!r} does not exist (a stroke-eval metrics.json)"
            )
        return DecisionRule(
            classes,
            source=f"most probable class (argmax): no evaluation of this run ({path} is absent)",
        )
    return _from_report(classes, Path(ckpt_path), path, explicit)


def _fixed_threshold(classes: list[str], threshold: float | str) -> DecisionRule:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(
            f"threshold={threshold!r}; expected a number in (0, 1), or one of {THRESHOLD_MODES}"
        ) from None
    if len(classes) != 2:
        raise ConfigError(f"threshold={value} applies to binary tasks; this model has {classes}")
    if not 0 < value < 1:
        raise ConfigError(f"threshold={value}; expected a probability in (0, 1)")
    return DecisionRule(
        classes,
        value,
        {"max": value, "mean": value},
        source=f"P({classes[1]}) >= {value:g}, set by threshold= on the command line",
    )


def _from_report(classes: list[str], ckpt: Path, path: Path, explicit: bool) -> DecisionRule:
    """The validation operating point of the positive class in a metrics.json."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a readable stroke-eval metrics.json: {err}") from err
    argmax = "most probable class (argmax)"
    if report.get("classes") != classes:
        return DecisionRule(
            classes,
            source=f"{argmax}: {path} scores classes {report.get('classes')}, not {classes}",
        )
    scored = str((report.get("context") or {}).get("checkpoint", ""))
    if Path(scored).name != ckpt.name:
        if not explicit:
            return DecisionRule(
                classes,
                source=f"{argmax}: the run's evaluation scored {scored!r}, not {ckpt.name}",
            )
        log.warning("eval_metrics=%s scored %r, not %s; its threshold is used", path, scored, ckpt)
    point = _positive_point(report.get("image_level", {}), classes[1])
    if point is None:
        return DecisionRule(
            classes, source=f"{argmax}: {path} has no validation operating point for {classes[1]}"
        )
    patient = {
        how: p["threshold"]
        for how, level in (report.get("patient_level") or {}).items()
        if (p := _positive_point(level, classes[1])) is not None
    }
    method = point.get("method", "?")
    return DecisionRule(
        classes,
        float(point["threshold"]),
        {k: float(v) for k, v in patient.items()},
        source=(
            f"P({classes[1]}) >= {float(point['threshold']):.4g}: the operating point stroke-eval "
            f"chose on the validation split ({method}), from {path.parent.name}/{path.name}"
        ),
        chosen_on_validation=point,
    )


def _positive_point(level: dict, positive: str) -> dict | None:
    for entry in level.get("operating_points", []):
        if entry.get("class") == positive and "chosen_on_validation" in entry:
            return dict(entry["chosen_on_validation"])
    return None
