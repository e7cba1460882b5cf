"""How a multi-label model's probabilities become findings: a threshold per label.

`stroke-train` writes the run's report into `<run>/eval/metrics.json`; its `thresholds`
hold, per label, the threshold chosen on the validation split. `stroke-predict` and
`stroke-serve` decide a label present when P(label) >= its threshold, at 0.5 for a label
the report does not name (or without a report).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: the threshold of a label no report chose one for
DEFAULT_THRESHOLD = 0.5


def run_report(ckpt_path: str | Path) -> Path:
    """Where `stroke-train` puts the report of a checkpoint `<run>/checkpoints/x.ckpt`."""
    return Path(ckpt_path).expanduser().resolve().parent.parent / "eval" / "metrics.json"


def validation_thresholds(report: Path) -> dict[str, float]:
    """label -> the threshold a report chose on validation ({} when it cannot be read)."""
    try:
        chosen = json.loads(report.read_text()).get("thresholds") or {}
    except (OSError, ValueError):
        log.warning("cannot read the thresholds of %s: deciding at %g", report, DEFAULT_THRESHOLD)
        return {}
    return {label: float(entry["threshold"]) for label, entry in chosen.items()}


@dataclass(frozen=True)
class LabelThresholds:
    """A threshold per label: a label is found when P(label) >= its threshold."""

    classes: list[str]
    thresholds: dict[str, float]
    #: one sentence saying where the thresholds come from (the page shows it)
    source: str

    #: the server's rule name and single threshold: there is one threshold per label instead
    rule = "thresholds"
    threshold = None

    def decide(self, probs: np.ndarray) -> int:
        """The most probable label (the one a saliency map would explain)."""
        return int(np.argmax(probs))

    def labels(self, probs: np.ndarray) -> list[str]:
        """The labels found in one image's (or series') probabilities, in label order."""
        return [c for c, p in zip(self.classes, probs, strict=True) if p >= self.thresholds[c]]

    def card(self) -> dict[str, object]:
        """Plain values for the model card."""
        return {
            "rule": self.rule,
            "threshold": None,
            "positive_class": None,
            "patient_thresholds": {},
            "thresholds": dict(self.thresholds),
            "source": self.source,
            "chosen_on_validation": None,
        }


def label_set(labels: Sequence[str]) -> str:
    """The found labels as stroke-predict's `labels` column writes them: `a|any`, or `none`."""
    return "|".join(labels) or "none"
