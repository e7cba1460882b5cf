"""Patient-aware, stratified, seeded train/val/test splits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from stroke.data.samples import Sample
from stroke.errors import DatasetError


def patient_labels(samples: Sequence[Sample]) -> dict[str, str]:
    """Each patient's label for stratification: its most frequent image label."""
    per_patient: dict[str, Counter[str]] = defaultdict(Counter)
    for s in samples:
        per_patient[s.patient_id][s.label] += 1
    # ties broken by name so the result does not depend on file order
    return {p: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for p, c in per_patient.items()}


def check_no_patient_overlap(samples: Sequence[Sample]) -> None:
    """Raise if any patient has images in more than one split: that is leakage."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.split is not None:
            splits_of[s.patient_id].add(s.split)
    shared = sorted(p for p, splits in splits_of.items() if len(splits) > 1)
    if shared:
        shown = ", ".join(f"{p} ({'/'.join(sorted(splits_of[p]))})" for p in shared[:5])
        raise DatasetError(
            f"{len(shared)} patient(s) have images in more than one split, which leaks "
            f"patients between training and evaluation: {shown}"
        )


def assign_splits(
    samples: Sequence[Sample], val_fraction: float, test_fraction: float, seed: int
) -> list[Sample]:
    """Give every sample a split, keeping each patient's images together.

    Samples that already carry a split (pre-split folders, a split column) keep it; a
    missing val or test split is carved out of train. Within each class (a patient's
    majority label) patients are shuffled with `seed` and cut by the fractions, so class
    proportions are kept in every split.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DatasetError(f"data.{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves "
            "no training data; their sum must be below 1"
        )
    check_no_patient_overlap(samples)
    present = {s.split for s in samples if s.split is not None}
    carve = {
        "val": val_fraction if "val" not in present else 0.0,
        "test": test_fraction if "test" not in present else 0.0,
    }
    pool = [s for s in samples if s.split in (None, "train")]
    labels = patient_labels(pool)
    by_class: dict[str, list[str]] = defaultdict(list)
    for patient, label in sorted(labels.items()):
        by_class[label].append(patient)

    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for label in sorted(by_class):
        patients = list(by_class[label])
        rng.shuffle(patients)
        n = len(patients)
        n_test = _count(n, carve["test"])
        n_val = _count(n - n_test, carve["val"] / (1.0 - carve["test"]))
        for i, patient in enumerate(patients):
            split_of[patient] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return [
        s if s.split in ("val", "test") else replace(s, split=split_of[s.patient_id])
        for s in samples
    ]


def _count(n: int, fraction: float) -> int:
    """Patients of one class to put in a split: rounded, at least one when asked for any."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))
