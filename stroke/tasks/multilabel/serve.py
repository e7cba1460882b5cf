"""The multi-label model the server holds: a sigmoid per label, a threshold per label.

What stroke-serve needs of a model (as `stroke.tasks.classification.serve.ServedModel`):
`classes`, `preprocessing`, `rule`, `checkpoint_sha256`, `prepare`, `probabilities`,
`describe`, `describe_series`, `can_explain`, `card`. The probabilities are stroke-predict's
(`predict.Ensemble`: the members' sigmoids averaged, `any` raised to its largest subtype
when the model was trained with `enforce_any`), so a slice's and a series' numbers are the
rows `stroke-predict` writes for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.inference.card import NOTICE, checkpoint_card, checkpoints_sha256, input_card
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.multilabel.decision import (
    DEFAULT_THRESHOLD,
    LabelThresholds,
    label_set,
    run_report,
    validation_thresholds,
)
from stroke.tasks.multilabel.metrics import enforce_any
from stroke.tasks.multilabel.predict import Ensemble, context_inputs, group_series, load_members


@dataclass
class ServedMultiLabel:
    """Loaded multi-label checkpoint(s) and everything the server needs to answer with them."""

    model: Ensemble
    preprocessing: Preprocessing
    rule: LabelThresholds
    checkpoint_sha256: str
    device: str = "cpu"

    #: one flip of a multi-label model is not what stroke-predict scores; no saliency maps
    tta = False
    can_explain = False

    @classmethod
    def load(
        cls,
        ckpt_path: str | Path,
        device: str = "cpu",
        threshold: float | str | None = "auto",
        eval_metrics: str | Path | None = None,
        tta: bool | None = None,
        target_layer: str | None = None,
    ) -> ServedMultiLabel:
        """Load one checkpoint, a list of them or a CV multirun folder (averaged), safely."""
        if tta:
            raise ConfigError("tta=true: stroke-predict scores a multi-label model unflipped")
        paths = checkpoint_paths(ckpt_path)
        model = load_members(paths)
        preprocessing = model.first.preprocessing
        if preprocessing is None:
            raise ConfigError(f"ckpt_path={str(ckpt_path)!r} records no preprocessing: retrain it")
        rule = label_rule(model.first.class_names, paths, threshold, eval_metrics)
        if model.first.settings.get("enforce_any"):
            rule = LabelThresholds(
                rule.classes,
                rule.thresholds,
                rule.source + f"; P({model.first.settings['any_label']}) is raised to its "
                "largest subtype's (enforce_any)",
            )
        members = paths if len(paths) > 1 else []
        return cls(model, preprocessing, rule, checkpoints_sha256(paths[0], members), device)

    def __post_init__(self) -> None:
        self.loader = self.preprocessing.file_loader()
        self.members = [m.path for m in self.model.members] if len(self.model.members) > 1 else []

    @property
    def classes(self) -> list[str]:
        """The labels, in the network's output order."""
        return self.model.first.class_names

    def prepare(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(letterboxed uint8 image of the slice alone, normalised input of it as a one-slice
        series): stroke-predict's own path; `with_context` restacks a series' slices."""
        image = self.loader(path)
        return image, context_inputs([image], self.preprocessing)[0]

    @property
    def context_slices(self) -> int:
        """Neighbouring slices each input holds (data.context_slices of the run)."""
        return self.preprocessing.context_slices

    def with_context(self, paths: list[Path], images: list[np.ndarray]) -> list[np.ndarray]:
        """The normalised inputs of uploads read together, each slice with its neighbours
        in its series (DICOM SeriesInstanceUID, ordered along the slice normal), exactly as
        stroke-predict stacks them; other files are their own one-slice series."""
        where = {path: i for i, path in enumerate(paths)}
        inputs: list[np.ndarray | None] = [None] * len(paths)
        for series in group_series(paths):
            order = [where[item.path] for item in series]
            stacked = context_inputs([images[i] for i in order], self.preprocessing)
            for index, tensor in zip(order, stacked, strict=True):
                inputs[index] = tensor
        return inputs

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(label) of a batch of normalised inputs (N x C x H x W): each its own, no sum to 1."""
        probs = self.model(torch.from_numpy(batch), self.device)
        settings = self.model.first.settings
        if settings.get("enforce_any"):
            probs = enforce_any(probs, self.classes, settings.get("any_label"))
        return probs

    def grad_cams(self, batch: np.ndarray, targets: list[int]) -> np.ndarray:
        raise ConfigError("stroke-serve draws no Grad-CAM for a multi-label model")

    def describe(self, probs: np.ndarray) -> dict[str, object]:
        """One image's answer: P per label, the labels found (`predicted_class`: `a|any`)."""
        found = self.rule.labels(probs)
        return {
            "probabilities": dict(zip(self.classes, map(float, probs), strict=True)),
            "labels": found,
            "thresholds": dict(self.rule.thresholds),
            "predicted_class": label_set(found),
            "probability": float(np.max(probs)),
        }

    def describe_series(self, slice_probs: np.ndarray, how: str) -> dict[str, object]:
        """A series' answer: per label the max (or mean) of its slices, at the same thresholds."""
        series = slice_probs.max(axis=0) if how == "max" else slice_probs.mean(axis=0)
        return {
            **self.describe(series),
            "most_suspicious": int(np.argmax(slice_probs.max(axis=1))),
            "decision_rule": self.rule.rule,
            "threshold": None,
            "threshold_source": self.rule.source,
        }

    def card(self) -> dict[str, object]:
        """What the page header and `GET /api/model` show about the model."""
        first = self.model.first
        return {
            "name": f"{first.backbone.get('name', '?')} (multi-label)",
            "classes": self.classes,
            **input_card(self.preprocessing),
            "checkpoint": checkpoint_card(first.path, self.members, self.checkpoint_sha256),
            "decision": self.rule.card(),
            "tta": False,
            "ensemble": [str(p) for p in self.members],
            "notice": NOTICE,
        }


def label_rule(
    labels: list[str],
    paths: list[Path],
    threshold: float | str | None = "auto",
    eval_metrics: str | Path | None = None,
) -> LabelThresholds:
    """The thresholds `threshold=` asks for: a number for every label, or `auto`: the run's
    validation thresholds (one checkpoint, or `eval_metrics=`), else 0.5."""
    if threshold is None or threshold == "argmax":
        raise ConfigError(
            f"threshold={threshold}: a multi-label model decides each label on its own; "
            "expected auto or a number in (0, 1)"
        )
    if threshold != "auto":
        value = _probability(threshold)
        source = f"P(label) >= {value:g} for every label, set by threshold= on the command line"
        return LabelThresholds(labels, dict.fromkeys(labels, value), source)
    if eval_metrics is not None:
        report = Path(eval_metrics).expanduser()
        if not report.is_file():
            raise ConfigError(f"eval_metrics={str(report)!r} does not exist (a metrics.json)")
    elif len(paths) > 1:
        return _default(labels, "an ensemble (one fold's thresholds do not hold for the mean)")
    else:
        report = run_report(paths[0])
        if not report.is_file():
            return _default(labels, f"no evaluation of this run ({report} is absent)")
    chosen = validation_thresholds(report)
    if not chosen:
        return _default(labels, f"{report} holds no thresholds")
    thresholds = {label: chosen.get(label, DEFAULT_THRESHOLD) for label in labels}
    missing = [label for label in labels if label not in chosen]
    source = (
        "P(label) >= the label's threshold chosen on the validation split, from "
        f"{report.parent.name}/{report.name}"
        + (f" ({', '.join(missing)}: {DEFAULT_THRESHOLD:g}, not in it)" if missing else "")
    )
    return LabelThresholds(labels, thresholds, source)


def _default(labels: list[str], why: str) -> LabelThresholds:
    source = f"P(label) >= {DEFAULT_THRESHOLD:g} for every label: {why}"
    return LabelThresholds(labels, dict.fromkeys(labels, DEFAULT_THRESHOLD), source)


def _probability(threshold: float | str) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold={threshold!r}; expected auto or a number in (0, 1)") from None
    if not 0 < value < 1:
        raise ConfigError(f"threshold={value}; expected a probability in (0, 1)")
    return value
