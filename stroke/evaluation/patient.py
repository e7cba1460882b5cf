"""Patient-level results: slice probabilities aggregated per patient.

A clinician reads a study, not a slice. Two aggregations are reported:

- `max`: the patient takes the probabilities of its most suspicious slice, the one with
  the lowest probability of the negative class (index 0). For a binary task that is the
  maximum of P(positive) over slices; the probabilities still sum to one.
- `mean`: the mean of the slices' probabilities.

The patient's true label is its most frequent non-negative slice label when any slice
is non-negative (a patient with one bleeding slice has a bleed), else the negative class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stroke.errors import ConfigError

AGGREGATIONS = ("max", "mean")


@dataclass(frozen=True)
class PatientPredictions:
    """One row per patient: id, true class index, aggregated N_patients x K probabilities."""

    patient_ids: list[str]
    targets: np.ndarray
    probs: np.ndarray
    n_slices: np.ndarray


def has_patient_groups(patient_ids: Sequence[str]) -> bool:
    """Whether patient ids group several images (else patient level equals image level)."""
    return len(set(patient_ids)) < len(patient_ids)


def aggregate_by_patient(
    patient_ids: Sequence[str], targets: np.ndarray, probs: np.ndarray, how: str
) -> PatientPredictions:
    """Per-patient probabilities by `how` (`max` or `mean`) and per-patient true labels."""
    if how not in AGGREGATIONS:
        raise ConfigError(f"evaluation.patient_aggregations has {how!r}; expected {AGGREGATIONS}")
    ids, inverse = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
    targets = np.asarray(targets, dtype=np.int64)
    probs = np.asarray(probs, dtype=float)
    num_classes = probs.shape[1]
    out_probs = np.zeros((len(ids), num_classes))
    out_targets = np.zeros(len(ids), dtype=np.int64)
    n_slices = np.bincount(inverse, minlength=len(ids))
    # each patient's rows as one run of a stable sort: linear, where a scan per patient
    # would be quadratic in the size of the split
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(n_slices)
    for p in range(len(ids)):
        rows = order[bounds[p] - n_slices[p] : bounds[p]]
        slice_probs = probs[rows]
        if how == "max":
            out_probs[p] = slice_probs[np.argmin(slice_probs[:, 0])]
        else:
            out_probs[p] = slice_probs.mean(axis=0)
        out_targets[p] = _patient_label(targets[rows], num_classes)
    return PatientPredictions([str(i) for i in ids], out_targets, out_probs, n_slices)


def _patient_label(slice_labels: np.ndarray, num_classes: int) -> int:
    counts = np.bincount(slice_labels, minlength=num_classes)
    if counts[1:].sum() == 0:
        return 0
    return int(1 + np.argmax(counts[1:]))
