"""One summary row per DICOM series uploaded together, aggregated as `stroke-eval` does.

Files with the same PatientID and StudyInstanceUID are one patient's study; the served
model aggregates their slice probabilities and decides (`describe_series`): a classifier
as `stroke.evaluation.patient` aggregates a patient (`max`: the most suspicious slice;
`mean`) at the patient-level threshold its run's evaluation chose, a multi-label model
per label at its thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from stroke.errors import ConfigError
from stroke.evaluation.patient import AGGREGATIONS


class DescribesSeries(Protocol):
    def describe_series(self, slice_probs: np.ndarray, how: str) -> dict[str, object]: ...


def check_aggregation(how: str) -> str:
    """`patient_aggregation=` must name one of stroke-eval's aggregations."""
    if how not in AGGREGATIONS:
        raise ConfigError(f"patient_aggregation={how!r}; expected one of {AGGREGATIONS}")
    return how


def series_summaries(
    files: Sequence[dict[str, object]],
    probs: dict[int, np.ndarray],
    model: DescribesSeries,
    how: str = "max",
) -> list[dict[str, object]]:
    """Summary rows for groups of two or more predicted DICOM files of one patient's study.

    `files` holds per upload `index` and its DICOM `PatientID`, `StudyInstanceUID` (empty
    for other files); `probs` the probabilities of each predicted upload, by index.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for entry in files:
        key = (str(entry.get("PatientID") or ""), str(entry.get("StudyInstanceUID") or ""))
        if all(key) and entry["index"] in probs:
            groups.setdefault(key, []).append(int(entry["index"]))
    rows = []
    for n, ((patient_id, study_uid), indices) in enumerate(
        sorted(groups.items(), key=lambda kv: kv[1][0])
    ):
        if len(indices) < 2:
            continue
        answer = model.describe_series(np.stack([probs[i] for i in indices]), how)
        rows.append(
            {
                "series": n + 1,
                "patient_id": patient_id,
                "study_uid": study_uid,
                "files": indices,
                "n_images": len(indices),
                "aggregation": how,
                **answer,
                "most_suspicious": indices[int(answer["most_suspicious"])],
            }
        )
    return rows
