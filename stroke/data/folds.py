"""Patient-grouped, stratified K-fold cross-validation: which split each sample lands in.

`data.fold=i` (with `data.folds=K`) makes fold i of K the held-out part:
- `fold_split=test` (default): fold i is the test split and validation is carved from
  the other K-1 folds (patient-aware, `val_fraction`). Every patient is tested exactly
  once over the K runs, so the mean and spread of the test metrics are the usual
  cross-validated estimate.
- `fold_split=val`: a fixed test split is held out first (`test_fraction`, the same
  patients in every fold) and fold i of the rest is the validation split.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from stroke.data.samples import Sample
from stroke.data.splits import assign_splits, check_no_patient_overlap
from stroke.errors import DatasetError

log = logging.getLogger(__name__)

FOLD_SPLITS = ("test", "val")


def fold_of_patients(samples: Sequence[Sample], folds: int, seed: int) -> dict[str, int]:
    """The fold (0..folds-1) of every patient: stratified by label, grouped by patient."""
    patients = sorted({s.patient_id for s in samples})
    if len(patients) < folds:
        raise DatasetError(
            f"data.folds={folds} needs at least {folds} patients, the data has {len(patients)}"
        )
    per_class = defaultdict(set)
    for s in samples:
        per_class[s.label].add(s.patient_id)
    thin = {label: len(p) for label, p in per_class.items() if len(p) < folds}
    if thin:
        log.warning(
            "cross-validation: classes %s have fewer patients than data.folds=%d; some "
            "held-out folds will have none of them",
            thin,
            folds,
        )
    labels = np.asarray([s.label for s in samples])
    groups = np.asarray([s.patient_id for s in samples])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of: dict[str, int] = {}
    with warnings.catch_warnings():
        # the thin-class case is reported above in the project's words
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(samples)), labels, groups)):
            for patient in set(groups[held_out]):
                fold_of[str(patient)] = k
    return fold_of


def assign_fold(
    samples: Sequence[Sample],
    folds: int,
    fold: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    fold_split: str = "test",
) -> list[Sample]:
    """Give every sample its split for fold `fold` of `folds` (see the module docstring)."""
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise DatasetError(f"data.folds must be an integer >= 2, got {folds!r}")
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < folds:
        raise DatasetError(
            f"data.fold must be an integer in 0..{folds - 1} (data.folds={folds}), got {fold!r}"
        )
    if fold_split not in FOLD_SPLITS:
        raise DatasetError(
            f"data.fold_split must be one of {list(FOLD_SPLITS)}, got {fold_split!r}"
        )
    presplit = Counter(s.split for s in samples if s.split is not None)
    if presplit:
        raise DatasetError(
            f"cross-validation (data.fold={fold}) needs data without fixed splits, but the "
            f"source assigns {dict(presplit)} (split folders or a split column); use data=folder "
            "or drop the split column"
        )
    if fold_split == "test":
        fold_of = fold_of_patients(samples, folds, seed)
        held_out = [replace(s, split="test") for s in samples if fold_of[s.patient_id] == fold]
        rest = assign_splits(
            [s for s in samples if fold_of[s.patient_id] != fold], val_fraction, 0.0, seed
        )
    else:
        fixed = assign_splits(samples, 0.0, test_fraction, seed)
        pool = [replace(s, split=None) for s in fixed if s.split != "test"]
        fold_of = fold_of_patients(pool, folds, seed)
        held_out = [s for s in fixed if s.split == "test"]
        rest = [replace(s, split="val" if fold_of[s.patient_id] == fold else "train") for s in pool]
    # back to the source's order, so splits.csv reads like the other runs
    split_of = {_key(s): s.split for s in [*held_out, *rest]}
    result = [replace(s, split=split_of[_key(s)]) for s in samples]
    check_no_patient_overlap(result)
    return result


def _key(sample: Sample) -> tuple:
    return (sample.path, sample.slice_index)
