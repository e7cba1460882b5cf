"""2.5D input: a slice with its neighbours as channels (`data.context_slices=k`).

A slice of a CT volume says more with the slices above and below it: a small bleed is a
bright blob on three consecutive slices, a vessel in one plane a line. With
`context_slices=k` every sample becomes 2k + 1 channels, the slices k below it to k above
it in slice order, so the model's first convolution sees the local 3-D context.

Slice order comes from what the source knows:
- a sample with a `series_id` (single-slice DICOM files of one series) belongs to its
  series and is ordered by `slice_position`, its position along the slice normal;
- a sample with a `slice_index` (a NIfTI volume, a multi-frame DICOM) belongs to the
  volume of its file and is ordered by that index;
- other samples (single-slice DICOM, image files) belong to the volume of their patient
  and folder, ordered by the slice number `slice_regex` finds in the file name (its first
  group, an integer), else in the source's order (DICOM sources list slices along the scan
  axis, folders by name).

At the edges of a volume the missing neighbours repeat the edge slice (replicate), so the
first slice of a volume is (s0, s0, s1) with k = 1. A volume of one slice is that slice
repeated, which is also how a lone image is read at prediction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stroke.data.samples import Sample
from stroke.errors import ConfigError, DatasetError


def volume_key(sample: Sample) -> tuple[str, ...]:
    """The volume a slice belongs to: its series when the source knows it, its file (slices of
    one file), else patient and folder."""
    if sample.series_id is not None:
        return ("series", str(sample.series_id))
    if sample.slice_index is not None:
        return ("file", str(sample.path))
    return ("folder", str(sample.patient_id), str(Path(sample.path).parent))


def slice_number(sample: Sample, pattern: re.Pattern | None) -> float | None:
    """The slice's position in its volume: `slice_position` (mm along the normal), else
    `slice_index`, else the regex's first group."""
    if sample.slice_position is not None:
        return float(sample.slice_position)
    if sample.slice_index is not None:
        return int(sample.slice_index)
    if pattern is None:
        return None
    match = pattern.search(Path(sample.path).name)
    if match is None or not match.groups():
        raise DatasetError(
            f"data.slice_regex={pattern.pattern!r} finds no slice number (first group) in "
            f"{Path(sample.path).name}"
        )
    try:
        return int(match.group(1))
    except ValueError as err:
        raise DatasetError(
            f"data.slice_regex={pattern.pattern!r} matched {match.group(1)!r} in "
            f"{Path(sample.path).name}: a slice number must be an integer"
        ) from err


def compile_slice_regex(slice_regex: str | None) -> re.Pattern | None:
    if slice_regex is None:
        return None
    try:
        pattern = re.compile(slice_regex)
    except re.error as err:
        raise ConfigError(f"data.slice_regex={slice_regex!r} is not a regex: {err}") from err
    if pattern.groups < 1:
        raise ConfigError(f"data.slice_regex={slice_regex!r} needs a group for the slice number")
    return pattern


def neighbour_indices(
    samples: Sequence[Sample], context_slices: int, slice_regex: str | None = None
) -> list[list[int]]:
    """For each sample, the indices (into `samples`) of its 2k + 1 channels, lowest slice
    first, the sample itself in the middle; the edge slice repeated past a volume's ends."""
    if context_slices < 0:
        raise ConfigError(f"data.context_slices must be >= 0, got {context_slices}")
    pattern = compile_slice_regex(slice_regex)
    volumes: dict[tuple[str, ...], list[int]] = {}
    for i, sample in enumerate(samples):
        volumes.setdefault(volume_key(sample), []).append(i)
    result: list[list[int]] = [[] for _ in samples]
    for members in volumes.values():
        numbers = [slice_number(samples[i], pattern) for i in members]
        if all(n is not None for n in numbers):
            order = [i for _, i in sorted(zip(numbers, members, strict=True))]
            if len(set(numbers)) < len(numbers):
                repeated = sorted({n for n in numbers if numbers.count(n) > 1})
                raise DatasetError(
                    f"slices {repeated[:5]} appear twice in the volume of "
                    f"{samples[members[0]].path}: cannot order its slices"
                )
        else:  # the source's own order
            order = list(members)
        last = len(order) - 1
        for position, index in enumerate(order):
            result[index] = [
                order[min(max(position + offset, 0), last)]
                for offset in range(-context_slices, context_slices + 1)
            ]
    return result


def stack_channels(slices: Sequence[np.ndarray]) -> np.ndarray:
    """H x W x C images of one size (C = the base channels) as one H x W x (n C) image."""
    arrays = [s[:, :, None] if s.ndim == 2 else s for s in slices]
    return np.ascontiguousarray(np.concatenate(arrays, axis=2))
