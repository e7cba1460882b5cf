"""The classifier the server holds: loaded once, with its preprocessing, decision rule and card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stroke.data.images import ImageLoader
from stroke.data.preprocessing import Preprocessing
from stroke.data.windowing import WINDOW_PRESETS, describe_windows, resolve_window
from stroke.errors import ConfigError
from stroke.inference.predictor import TorchBackend, class_probabilities, preprocess_file
from stroke.tasks.classification.checkpoint import LoadedClassifier
from stroke.tasks.classification.decision import DecisionRule, decision_rule
from stroke.tasks.classification.ensemble import load_ensemble

NOTICE = (
    "Not a medical device. For research and demonstration only: not for diagnosis, "
    "treatment or any clinical decision."
)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensemble_sha256(classifier: LoadedClassifier) -> str:
    """The checkpoint's SHA-256; of an ensemble, that of its members' hashes in order."""
    if not classifier.members:
        return file_sha256(classifier.path)
    digest = hashlib.sha256()
    for member in classifier.members:
        digest.update(file_sha256(Path(member)).encode())
    return digest.hexdigest()


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

    def card(self) -> dict[str, object]:
        """What the page header and `GET /api/model` show about the model."""
        windows = self.preprocessing.dicom_windows
        resolved = [resolve_window(w) for w in windows] if windows else None
        run_dir = self.classifier.path.resolve().parent.parent
        return {
            "name": str(self.classifier.backbone.get("name", "?")),
            "classes": self.classes,
            "input_size": self.preprocessing.image_size,
            "in_chans": self.preprocessing.in_chans,
            "mean": list(self.preprocessing.mean),
            "std": list(self.preprocessing.std),
            "reads_dicom": resolved is not None,
            "dicom_windows": describe_windows(resolved) if resolved else None,
            "dicom_window_names": _preset_names(resolved) if resolved else None,
            "window_presets": list(WINDOW_PRESETS),
            "checkpoint": {
                "file": self.classifier.path.name
                + (
                    f" + {len(self.classifier.members) - 1} more" if self.classifier.members else ""
                ),
                "run": run_dir.name,
                "sha256": self.checkpoint_sha256,
            },
            "decision": self.rule.card(),
            "tta": self.tta,
            "ensemble": [str(p) for p in self.classifier.members],
            "notice": NOTICE,
        }


def _more(members) -> str:
    """` + 4 more` after the first member's file name of an ensemble."""
    return f" + {len(members) - 1} more" if members else ""


def _preset_names(windows: list) -> list[str]:
    """The preset name of each window (`brain`), or its W/L text when it is none."""
    names = {w: name for name, w in WINDOW_PRESETS.items()}
    return [names.get(w, describe_windows([w])) for w in windows]
