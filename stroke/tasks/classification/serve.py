"""The classifier the server holds: loaded once, with its preprocessing, decision rule and card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stroke.data.images import ImageLoader
from stroke.data.preprocessing import Preprocessing
from stroke.errors import ConfigError
from stroke.evaluation.patient import aggregate_by_patient
from stroke.inference.card import (
    NOTICE,
    checkpoint_card,
    checkpoints_sha256,
    input_card,
)
from stroke.inference.predictor import TorchBackend, class_probabilities, decide, preprocess_file
from stroke.tasks.classification.checkpoint import LoadedClassifier
from stroke.tasks.classification.decision import DecisionRule, decision_rule
from stroke.tasks.classification.ensemble import load_ensemble


def ensemble_sha256(classifier: LoadedClassifier) -> str:
    """The checkpoint's SHA-256; of an ensemble, that of its members' hashes in order."""
    return checkpoints_sha256(classifier.path, classifier.members)


@dataclass
class ServedModel:
    """A loaded checkpoint and everything the server needs to answer with it."""

    classifier: LoadedClassifier
    preprocessing: Preprocessing
    rule: DecisionRule
    checkpoint_sha256: str
    device: str = "cpu"
    tta: bool = False
    target_layer: str | None = None

    @classmethod
    def load(
        cls,
        ckpt_path: str | Path,
        device: str = "cpu",
        threshold: float | str | None = "auto",
        eval_metrics: str | Path | None = None,
        tta: bool | None = None,
        target_layer: str | None = None,
    ) -> ServedModel:
        """Load a stroke-train checkpoint safely (weights_only) and find its decision rule.

        `ckpt_path` may name several checkpoints (a list, or a cross-validation multirun
        folder): they are served as one model, their probabilities averaged, as stroke-predict
        and stroke-eval do. An ensemble decides by `threshold=` or argmax (one fold's
        operating point does not hold for the mean), and draws no Grad-CAM (one network's).
        """
        classifier = load_ensemble(ckpt_path)
        if classifier.members and threshold == "auto" and eval_metrics is None:
            threshold = "argmax"
        if classifier.preprocessing is None:
            raise ConfigError(
                f"ckpt_path={str(ckpt_path)!r} records no preprocessing (an older checkpoint "
                "without its run directory); the server cannot know how to read images for it"
            )
        rule = decision_rule(classifier.class_names, ckpt_path, threshold, eval_metrics)
        return cls(
            classifier,
            classifier.preprocessing,
            rule,
            ensemble_sha256(classifier),
            device,
            classifier.tta if tta is None else bool(tta),
            target_layer,
        )

    def __post_init__(self) -> None:
        self.backend = TorchBackend(self.classifier.net, self.device)
        self.loader: ImageLoader = self.preprocessing.file_loader()

    @property
    def classes(self) -> list[str]:
        """Class names, negative class first."""
        return self.classifier.class_names

    def prepare(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(letterboxed uint8 image, normalised input): stroke-predict's own path."""
        return preprocess_file(path, self.preprocessing, self.loader)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of normalised inputs (N x C x H x W)."""
        return class_probabilities(self.backend, batch, self.tta)

    @property
    def can_explain(self) -> bool:
        """Whether Grad-CAM maps can be drawn: one network, not an ensemble's mean."""
        return not self.classifier.members

    def grad_cams(self, batch: np.ndarray, targets: list[int]) -> np.ndarray:
        """Grad-CAM maps (N x H x W in 0..1) of each input for its decided class."""
        if self.classifier.members:
            raise ConfigError("Grad-CAM explains one network; this server holds an ensemble")
        # imported on use: pytorch-grad-cam only when a page asks for a map
        from stroke.explain.gradcam import grad_cams

        return grad_cams(self.classifier.net, torch.from_numpy(batch), targets, self.target_layer)

    def describe(self, probs: np.ndarray) -> dict[str, object]:
        """One image's answer: its class probabilities and the decided class."""
        decided = self.rule.decide(probs)
        return {
            "probabilities": dict(zip(self.classes, map(float, probs), strict=True)),
            "predicted_class": self.classes[decided],
            "probability": float(probs[decided]),
        }

    def describe_series(self, slice_probs: np.ndarray, how: str) -> dict[str, object]:
        """A series' answer (slices x classes in), aggregated as stroke-eval aggregates a
        patient, decided at the patient-level threshold for `how` (else the image-level)."""
        n = len(slice_probs)
        aggregated = aggregate_by_patient(
            ["series"] * n, np.zeros(n, dtype=np.int64), slice_probs, how
        ).probs[0]
        threshold, source = self.rule.series_threshold(how)
        k = decide(aggregated, threshold)
        return {
            "most_suspicious": int(np.argmin(slice_probs[:, 0])),
            "probabilities": dict(zip(self.classes, map(float, aggregated), strict=True)),
            "predicted_class": self.classes[k],
            "decision_rule": "argmax" if threshold is None else "threshold",
            "threshold": threshold,
            "threshold_source": source,
        }

    def card(self) -> dict[str, object]:
        """What the page header and `GET /api/model` show about the model."""
        members = self.classifier.members
        return {
            "name": str(self.classifier.backbone.get("name", "?")),
            "classes": self.classes,
            **input_card(self.preprocessing),
            "checkpoint": checkpoint_card(self.classifier.path, members, self.checkpoint_sha256),
            "decision": self.rule.card(),
            "tta": self.tta,
            "ensemble": [str(p) for p in members],
            "notice": NOTICE,
        }
