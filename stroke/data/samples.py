"""Samples (one image each) and the mapping from raw labels to class indices."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stroke.errors import DatasetError
from stroke.io import atomic_writer

#: Split names used everywhere (splits.csv, the `split` column of a CSV source).
SPLITS = ("train", "val", "test")
#: Labels that name the negative class; it gets index 0 so binary metrics mean what they say.
NEGATIVE_LABELS = ("normal", "none", "negative", "no_hemorrhage", "healthy", "0")


@dataclass(frozen=True)
class Sample:
    """One image with its label, the patient it belongs to and, once assigned, its split.

    `slice_index` picks one 2-D image out of a file that holds several (an axial slice
    of a NIfTI volume, a frame of a multi-frame DICOM); None for one-image files.
    `mask_path` is an optional lesion mask of the same geometry (kept for segmentation).
    `series_id` and `slice_position` place a slice in its scan when the source knows them
    (DICOM: SeriesInstanceUID, and the position along the slice normal in mm from
    ImagePositionPatient and ImageOrientationPatient): 2.5D context and series-level
    models read a series in that order.

    A multi-label sample (several findings per image, e.g. hemorrhage subtypes) keeps one
    `label` string, its positive labels sorted and joined by `|` (`subarachnoid|subdural`),
    or `none` without any: splits and folds stratify on it like on a class, and the
    multi-label task turns it into a 0/1 vector (`multilabel_targets`).
    """

    path: Path
    label: str
    patient_id: str
    split: str | None = None
    slice_index: int | None = None
    mask_path: Path | None = None
    series_id: str | None = None
    slice_position: float | None = None


#: the label of a multi-label sample without any finding, and the separator of label sets
NO_FINDING = "none"
LABEL_SEPARATOR = "|"


def label_set_string(positives: Iterable[str]) -> str:
    """A multi-label sample's `label`: its positive labels, sorted and `|`-joined, or `none`."""
    names = sorted({str(p) for p in positives if str(p) != NO_FINDING})
    return LABEL_SEPARATOR.join(names) if names else NO_FINDING


def label_set(label: str) -> frozenset[str]:
    """The positive labels of a multi-label `label` string (empty for `none`)."""
    return frozenset(p for p in str(label).split(LABEL_SEPARATOR) if p and p != NO_FINDING)


def patient_id_from_name(path: Path, pattern: re.Pattern[str] | None) -> str:
    """The patient id of an image: the regex's `patient` group (or first group) on its file name.

    Without a pattern every image is its own patient (its path is the id), which is only
    honest when the data holds one image per patient.
    """
    if pattern is None:
        return path.as_posix()
    match = pattern.search(path.name)
    if match is None:
        raise DatasetError(
            f"patient_regex '{pattern.pattern}' does not match the file name {path.name!r} "
            f"({path}); expected a regex whose first group captures the patient id"
        )
    if "patient" in pattern.groupindex:
        return match.group("patient")
    return match.group(1) if pattern.groups else match.group(0)


def compile_patient_regex(patient_regex: str | None) -> re.Pattern[str] | None:
    """Compile `patient_regex`, naming the key in the error when it is not a valid regex."""
    if patient_regex is None:
        return None
    try:
        return re.compile(patient_regex)
    except re.error as err:
        raise DatasetError(f"patient_regex {patient_regex!r} is not a valid regex: {err}") from err


def apply_class_map(
    samples: Iterable[Sample], class_map: Mapping[str, str | None] | None
) -> list[Sample]:
    """Rename labels through `class_map`; a label mapped to None drops its samples."""
    if not class_map:
        return list(samples)
    mapping = {str(k): (None if v is None else str(v)) for k, v in class_map.items()}
    out = []
    for sample in samples:
        label = mapping.get(sample.label, sample.label)
        if label is not None:
            out.append(replace(sample, label=label))
    return out


def resolve_classes(
    samples: Sequence[Sample], classes: Sequence[str] | None, where: str
) -> list[str]:
    """The ordered class names: `classes` when given (checked), else those found, negative first."""
    found = Counter(s.label for s in samples)
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise DatasetError(f"data.classes has duplicates: {classes}")
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DatasetError(
                f"labels {unknown} found in {where} are not in data.classes={classes}; "
                "add them, or map or drop them with data.class_map"
            )
        missing = [c for c in classes if c not in found]
        if missing:
            raise DatasetError(
                f"data.classes names {missing} but {where} has no image with that label "
                f"(found: {dict(found)})"
            )
        ordered = classes
    else:
        ordered = sorted(found, key=lambda c: (c.lower() not in NEGATIVE_LABELS, c))
    if len(ordered) < 2:
        raise DatasetError(
            f"found a single class {ordered} in {where}; a classifier needs at least two "
            "(check data.root, data.class_map and data.classes)"
        )
    return list(ordered)


def write_splits_csv(samples: Sequence[Sample], path: Path) -> None:
    """Write the split actually used (path, label, patient_id, split) for the record.

    A `slice_index` column is added only when samples are slices of multi-image files,
    so one-image-per-file datasets keep the four-column file.
    """

    with_slices = any(s.slice_index is not None for s in samples)
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient_id", "split"] + ["slice_index"] * with_slices)
        for s in samples:
            row = [s.path.as_posix(), s.label, s.patient_id, s.split]
            if with_slices:
                row.append("" if s.slice_index is None else s.slice_index)
            writer.writerow(row)
