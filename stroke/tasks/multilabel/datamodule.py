"""The multi-label datamodule: every image has any number of findings (`data.labels`).

A sample's `label` is its label set (`subarachnoid|subdural`, `none`: see
stroke.data.samples), so sources, patient-aware splits, folds (stratified on the label set),
the leakage check and the cache are `StrokeDataModule`'s. What changes is the target, a 0/1
vector over `labels`, and an optional `any_label` (e.g. RSNA's `any`) appended to them and
derived: positive when any other label is (or when the source says so itself).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from stroke.data.datamodule import StrokeDataModule
from stroke.data.dataset import ImageClassificationDataset
from stroke.data.samples import SPLITS, Sample, label_set
from stroke.errors import ConfigError, DatasetError


def multilabel_targets(
    label: str, labels: Sequence[str], any_label: str | None = None
) -> np.ndarray:
    """The 0/1 vector of a sample's label set over `labels` (then `any_label`, derived)."""
    positives = label_set(label)
    vector = [float(name in positives) for name in labels]
    if any_label is not None:
        vector.append(float(any_label in positives or any(vector)))
    return np.asarray(vector, dtype=np.float32)


class MultiLabelDataset(ImageClassificationDataset):
    """Samples of one split as (image tensor C x H x W, 0/1 float vector over the labels)."""

    def __init__(self, *args: Any, labels: Sequence[str], any_label: str | None, **kwargs: Any):
        self.labels, self.any_label = list(labels), any_label
        super().__init__(*args, **kwargs)

    def targets_of(self, samples, class_to_idx) -> list:
        return [torch.from_numpy(multilabel_targets(s.label, self.labels, self.any_label))
                for s in samples]  # fmt: skip


class MultiLabelDataModule(StrokeDataModule):
    """`StrokeDataModule` for multi-label targets: `labels` the findings, in output order;
    `any_label` an extra output positive when any finding is (None: no such output)."""

    def __init__(
        self,
        source: Any,
        labels: Sequence[str],
        any_label: str | None = None,
        **keys: Any,
    ) -> None:
        super().__init__(source, **keys)
        if isinstance(labels, str) or not labels:
            raise ConfigError(f"data.labels must be a non-empty list of labels, got {labels!r}")
        self.labels = [str(label) for label in labels]
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"data.labels names a label twice: {self.labels}")
        if any_label is not None and str(any_label) in self.labels:
            raise ConfigError(
                f"data.any_label={any_label!r} is derived from data.labels; do not list it there"
            )
        self.any_label = None if any_label is None else str(any_label)
        if self.loading.sampler is not None:
            raise ConfigError(
                "data.sampler=weighted balances classes, which a multi-label task has not; "
                "use model.pos_weight=balanced"
            )

    @property
    def output_labels(self) -> list[str]:
        """The model's outputs in order: the labels, then `any_label`."""
        return self.labels + ([self.any_label] if self.any_label else [])

    def _class_names(self, samples: list[Sample], where: str) -> list[str]:
        known = set(self.output_labels)
        for sample in samples:
            unknown = label_set(sample.label) - known
            if unknown:
                raise DatasetError(
                    f"{sample.path} has label(s) {sorted(unknown)}, which are not in "
                    f"data.labels {self.labels}"
                    + (f" or data.any_label {self.any_label!r}" if self.any_label else "")
                )
        return self.output_labels

    def class_counts(self, split: str = "train") -> list[int]:
        """Positive images per output label in a split: the basis of `pos_weight`."""
        samples = self.split_samples(split)
        if not samples:
            return [0] * len(self.output_labels)
        vectors = np.stack([multilabel_targets(s.label, self.labels, self.any_label)
                            for s in samples])  # fmt: skip
        return [int(n) for n in vectors.sum(axis=0)]

    def _split_warnings(self) -> list[str]:
        warnings = []
        for split in SPLITS[1:]:
            size = sum(1 for s in self.samples if s.split == split)
            if not size:
                continue
            missing = [n for n, c in zip(self.output_labels, self.class_counts(split),
                                         strict=True) if c == 0]  # fmt: skip
            if missing:
                warnings.append(
                    f"the {split} split ({size} images) has no positive image of "
                    f"{', '.join(map(repr, missing))}: their ROC AUC and sensitivity are "
                    "undefined on it (null in metrics.json) and macro means leave them out"
                )
        return warnings

    def classes_of(self, sample: Sample) -> set[str]:
        """The output labels a sample is positive for (`any` derived)."""
        vector = multilabel_targets(sample.label, self.labels, self.any_label)
        return {name for name, v in zip(self.output_labels, vector, strict=True) if v}

    def label_set_counts(self, split: str = "train") -> Counter:
        """Images per label set in a split (the co-occurrence a report shows)."""
        return Counter(s.label for s in self.split_samples(split))

    def model_arguments(self) -> dict[str, Any]:
        """Outputs, channels, and the training split's counts (`model.loss.pos_weight`)."""
        return {
            "num_classes": len(self.output_labels),
            "input_channels": self.input_channels,
            "class_names": self.output_labels,
            "label_counts": {
                "any_label": self.any_label,
                "positives": self.class_counts("train"),
                "images": len(self.split_samples("train")),
            },
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "labels": self.labels, "any_label": self.any_label}

    def _dataset(self, samples, class_to_idx, loader, transform) -> MultiLabelDataset:
        neighbours = self._neighbours(samples)
        return MultiLabelDataset(
            samples, class_to_idx, loader, self.preprocessing, transform, neighbours,
            labels=self.labels, any_label=self.any_label,
        )  # fmt: skip
