"""One summary row per DICOM series uploaded together, aggregated as `stroke-eval` does.

Files with the same PatientID and StudyInstanceUID are one patient's study; their slice
probabilities are aggregated by `stroke.evaluation.patient` (`max`: the most suspicious
slice; `mean`), and the decision uses the patient-level threshold the run's evaluation
chose for that aggregation (else the image-level one, else argmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stroke.errors import ConfigError
from stroke.evaluation.patient import AGGREGATIONS, aggregate_by_patient
from stroke.inference.predictor import decide
from stroke.tasks.classification.decision import DecisionRule


def check_aggregation(how: str) -> str:
    """`patient_aggregation=` must name one of stroke-eval's aggregations."""
    if how not in AGGREGATIONS:
        raise ConfigError(f"patient_aggregation={how!r}; expected one of {AGGREGATIONS}")
    return how


def series_summaries(
    files: Sequence[dict[str, object]],
    probs: dict[int, np.ndarray],
    rule: DecisionRule,
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
        slice_probs = np.stack([probs[i] for i in indices])
        aggregated = aggregate_by_patient(
            [patient_id] * len(indices), np.zeros(len(indices), dtype=np.int64), slice_probs, how
        ).probs[0]
        threshold, source = _patient_threshold(rule, how)
        k = decide(aggregated, threshold)
        rows.append(
            {
                "series": n + 1,
                "patient_id": patient_id,
                "study_uid": study_uid,
                "files": indices,
                "n_images": len(indices),
                "aggregation": how,
                "most_suspicious": indices[int(np.argmin(slice_probs[:, 0]))],
                "probabilities": dict(zip(rule.classes, map(float, aggregated), strict=True)),
                "predicted_class": rule.classes[k],
                "decision_rule": "argmax" if threshold is None else "threshold",
                "threshold": threshold,
                "threshold_source": source,
            }
        )
    return rows


def _patient_threshold(rule: DecisionRule, how: str) -> tuple[float | None, str]:
    if rule.threshold is None:
        return None, "argmax"
    patient = rule.patient_threshold(how)
    if patient is not None:
        return patient, f"patient level ({how}), chosen on validation"
    return rule.threshold, "image level (the evaluation had no patient-level threshold)"
