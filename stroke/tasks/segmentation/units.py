"""Lesion size in real units: area per slice in mm², volume per patient in mL.

The pixel spacing comes from the file: DICOM's PixelSpacing and its slice spacing
(SpacingBetweenSlices, else SliceThickness), a NIfTI header's voxel sizes. Image files
(PNG, JPEG) carry none: sizes stay in pixels. The model sees a letterboxed image, whose
pixels are not the file's: an area of n model pixels is n / scale² pixels of the file
(`Preprocessing.pixel_scale`), and only then times the pixel's area in mm².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stroke.data.preprocessing import Preprocessing
from stroke.data.readers import format_of
from stroke.data.samples import Sample
from stroke.errors import DatasetError

#: mm³ per mL
MM3_PER_ML = 1000.0


@dataclass(frozen=True)
class SliceGeometry:
    """A slice's size in pixels and, when the file says, its pixel and slice spacing in mm."""

    height: int
    width: int
    #: (row, column) spacing in mm; None for image files
    pixel_mm: tuple[float, float] | None = None
    #: distance to the next slice in mm; None when unknown
    slice_mm: float | None = None

    def native_pixels(self, model_pixels: float, preprocessing: Preprocessing) -> float:
        """An area of `model_pixels` letterboxed pixels in pixels of this slice's file."""
        return model_pixels / preprocessing.pixel_scale(self.height, self.width) ** 2

    def area_mm2(self, native_pixels: float) -> float | None:
        """An area in the file's pixels in mm² (None without a pixel spacing)."""
        if self.pixel_mm is None:
            return None
        return native_pixels * self.pixel_mm[0] * self.pixel_mm[1]


def slice_geometry(sample: Sample) -> SliceGeometry:
    """The geometry of a sample's slice, read by its format's reader from the header."""
    path = Path(sample.path)
    file_format = format_of(path)
    if file_format is None:
        raise DatasetError(f"cannot tell the file format of {path} (stroke.data.readers)")
    return SliceGeometry(*file_format.grid(path, sample.slice_index))


def patient_volumes(
    patient_ids: Sequence[str],
    areas_px: np.ndarray,
    geometries: Sequence[SliceGeometry],
) -> tuple[dict[str, float], str]:
    """Lesion volume per patient: mL when every slice has its spacing, else pixels.

    `areas_px` are per-slice areas in file pixels. A volume is the sum over the patient's
    slices of area x slice spacing; without spacing it is the sum of the slice areas in
    pixels (comparable between true and predicted masks, not between scanners).
    """
    known = all(g.pixel_mm is not None and g.slice_mm is not None for g in geometries)
    volumes: dict[str, float] = {}
    for patient, area, geometry in zip(patient_ids, areas_px, geometries, strict=True):
        value = geometry.area_mm2(area) * geometry.slice_mm / MM3_PER_ML if known else area
        volumes[patient] = volumes.get(patient, 0.0) + float(value)
    return volumes, ("mL" if known else "px")
