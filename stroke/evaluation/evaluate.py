"""Score a model's predictions on the validation and test splits: the content of metrics.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from stroke.errors import DatasetError
from stroke.evaluation.metrics import (
    bootstrap_intervals,
    classification_scores,
    confusion_matrix,
    decision_scores,
    expected_calibration_error,
    with_intervals,
)
from stroke.evaluation.operating_point import OperatingPoint, choose_threshold
from stroke.evaluation.patient import AGGREGATIONS, aggregate_by_patient, has_patient_groups

#: the aggregation learned from slice features (stroke/evaluation/attention.py)
LEARNED_AGGREGATION = "attention"


@dataclass
class EvaluationConfig:
    """How a checkpoint is scored (conf/evaluation/default.yaml)."""

    n_boot: int = 1000
    ci_level: float = 0.95
    seed: int = 0
    #: `youden` or `sensitivity` (the most specific threshold reaching target_sensitivity)
    operating_point: str = "youden"
    target_sensitivity: float = 0.95
    calibration_bins: int = 10
    patient_aggregations: Sequence[str] = field(default_factory=lambda: list(AGGREGATIONS))
    #: segmentation: slices in the gallery of the worst (lowest Dice) slices
    gallery_size: int = 12


@dataclass
class SplitPredictions:
    """A model's class probabilities for every image of one split, with its ground truth."""

    split: str
    paths: list[str]
    patient_ids: list[str]
    targets: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@torch.no_grad()
def predict_split(
    net: torch.nn.Module, datamodule, split: str, device: str | torch.device = "cpu"
) -> SplitPredictions:
    """Run `net` over a split of a set-up StrokeDataModule (no augmentation) in file order."""
    dataset = datamodule.datasets[split]
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[split]()
    was_training = net.training
    net.eval().to(device)
    probs, targets = [], []
    for images, labels in loader:
        probs.append(net(images.to(device)).float().softmax(dim=1).cpu())
        targets.append(labels)
    net.train(was_training)
    num_classes = datamodule.num_classes
    return SplitPredictions(
        split=split,
        paths=[s.path.as_posix() for s in dataset.samples],
        patient_ids=[s.patient_id for s in dataset.samples],
        targets=torch.cat(targets).numpy() if targets else np.zeros(0, dtype=np.int64),
        probs=torch.cat(probs).numpy() if probs else np.zeros((0, num_classes)),
    )


def _threshold_classes(class_names: Sequence[str]) -> list[int]:
    """Classes that get an operating point: every class but the negative one (index 0)."""
    return list(range(1, len(class_names)))


def _score_level(
    targets: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[str] | None,
    config: EvaluationConfig,
    val: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, object]:
    """Metrics with intervals, confusion matrix and validation-chosen operating points."""

    def statistic(idx: np.ndarray) -> dict[str, float]:
        scores = classification_scores(targets[idx], probs[idx], class_names)
        scores["ece"] = expected_calibration_error(
            targets[idx], probs[idx], config.calibration_bins
        )
        return scores

    every = np.arange(len(targets))
    bootstrap = {"n_boot": config.n_boot, "level": config.ci_level, "seed": config.seed}
    intervals = bootstrap_intervals(statistic, len(targets), groups, **bootstrap)
    result: dict[str, object] = {
        "n_images": int(len(targets)),
        "metrics": with_intervals(statistic(every), intervals),
        "confusion_matrix": confusion_matrix(
            targets, probs.argmax(axis=1), len(class_names)
        ).tolist(),
        "operating_points": [],
    }
    for k in _threshold_classes(class_names):
        entry: dict[str, object] = {"class": class_names[k]}
        try:
            if val is None:
                raise ValueError("no validation split to choose it on")
            point = choose_threshold(
                val[0] == k,
                val[1][:, k],
                config.operating_point,
                config.target_sensitivity,
                class_names[k],
            )
        except ValueError as err:
            entry["skipped"] = str(err)
            result["operating_points"].append(entry)
            continue
        positive, decided = targets == k, probs[:, k] >= point.threshold

        def decision(idx: np.ndarray, positive=positive, decided=decided) -> dict[str, float]:
            return decision_scores(positive[idx], decided[idx])

        point_intervals = bootstrap_intervals(decision, len(targets), groups, **bootstrap)
        entry.update(
            chosen_on_validation=point.to_dict(),
            test=with_intervals(decision(every), point_intervals),
            test_confusion={
                "tp": int(np.sum(positive & decided)),
                "fp": int(np.sum(~positive & decided)),
                "fn": int(np.sum(positive & ~decided)),
                "tn": int(np.sum(~positive & ~decided)),
            },
        )
        result["operating_points"].append(entry)
    return result


def evaluate_predictions(
    test: SplitPredictions,
    val: SplitPredictions | None,
    class_names: Sequence[str],
    config: EvaluationConfig | None = None,
    learned: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Everything metrics.json holds: image level, operating points, patient level.

    `learned`: patient predictions of a learned aggregation (`attention`,
    stroke/evaluation/attention.py) for `val` and `test`, fitted by the caller, which has
    the network.
    """
    config = config or EvaluationConfig()
    class_names = list(class_names)
    if len(test) == 0:
        raise DatasetError(
            "the test split holds no images: nothing to evaluate",
            hint="raise data.test_fraction, or give a test/ folder (data=presplit)",
        )
    by_patient = has_patient_groups(test.patient_ids)
    val_arrays = (val.targets, val.probs) if val is not None and len(val) else None
    result: dict[str, object] = {
        "classes": class_names,
        "positive_class": class_names[1] if len(class_names) == 2 else None,
        "settings": {
            "n_boot": config.n_boot,
            "ci_level": config.ci_level,
            "seed": config.seed,
            "resampling_unit": "patient" if by_patient else "image",
            "operating_point": config.operating_point,
            "target_sensitivity": config.target_sensitivity,
            "calibration_bins": config.calibration_bins,
        },
        "splits": {
            s.split: {"n_images": len(s), "n_patients": len(set(s.patient_ids))}
            for s in (val, test)
            if s is not None
        },
        "image_level": _score_level(
            test.targets,
            test.probs,
            class_names,
            test.patient_ids if by_patient else None,
            config,
            val_arrays,
        ),
        "patient_level": {},
    }
    result["warnings"] = split_class_warnings(test, val, class_names)
    if not by_patient:
        result["patient_level_skipped"] = (
            "every test image has its own patient id: patient level equals image level"
        )
        return result
    for how in config.patient_aggregations:
        if how == LEARNED_AGGREGATION:
            if not learned or learned.get("test") is None:
                # asked for but not computed: the report says so in its place, never drops it
                why = (learned or {}).get("skipped") or (
                    "attention pooling needs the network's features (stroke-train, stroke-eval)"
                )
                result["patient_level"][how] = {"skipped": why}
                continue
            patients, aggregated = learned["test"], learned.get("val")
            val_patients = None if aggregated is None else (aggregated.targets, aggregated.probs)
        else:
            patients = aggregate_by_patient(test.patient_ids, test.targets, test.probs, how)
            val_patients = None
            if val_arrays is not None:
                aggregated = aggregate_by_patient(val.patient_ids, val.targets, val.probs, how)
                val_patients = (aggregated.targets, aggregated.probs)
        level = _score_level(
            patients.targets, patients.probs, class_names, None, config, val_patients
        )
        level["n_patients"] = level.pop("n_images")
        result["patient_level"][how] = level
    return result


def split_class_warnings(
    test: SplitPredictions, val: SplitPredictions | None, class_names: Sequence[str]
) -> list[str]:
    """A line for each class a split has no image of: what is undefined (null) because of it."""
    warnings = []
    for split in (test, val):
        if split is None or not len(split):
            continue
        present = set(np.asarray(split.targets).tolist())
        for k, name in enumerate(class_names):
            if k in present:
                continue
            what = (
                "recall, specificity-based operating points, ROC AUC and average precision"
                if split.split == "test"
                else "a validation-chosen threshold"
            )
            warnings.append(
                f"the {split.split} split ({len(split)} images) has no image of class "
                f"{name!r}: its {what} are undefined (null), and macro means leave it out"
            )
        if len(present) == 1:
            warnings.append(
                f"every {split.split} image is of one class: accuracy says nothing about the "
                "other classes, and ROC AUC is undefined"
            )
    return warnings


def chosen_thresholds(result: dict[str, object]) -> list[OperatingPoint]:
    """The image-level operating points of an evaluation result, as OperatingPoint objects."""
    points = []
    for entry in result["image_level"]["operating_points"]:
        if "chosen_on_validation" in entry:
            points.append(OperatingPoint(**entry["chosen_on_validation"]))
    return points
