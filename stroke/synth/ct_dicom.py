"""Axial CT slices as DICOM files: the one builder behind every phantom layout that writes DICOM.

Slices are CT Image Storage in Explicit VR Little Endian, stored in HU as RSNA's files are
(int16, RescaleSlope 1, RescaleIntercept -1024), rows along the patient's posterior and
columns along the patient's left (ImageOrientationPatient 1,0,0,0,1,0), positions in DICOM's
LPS patient space. UIDs are fixed by what makes the content, so a seed fixes every file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["HU_INTERCEPT", "CTSeries", "content_uid", "stored_hu"]

#: RescaleIntercept of every slice: stored values are HU + 1024, as RSNA's are.
HU_INTERCEPT = -1024
_STORED_MAX = 3071  # the highest HU an int16 file with this intercept holds in 12 bits
_AXIAL = [1, 0, 0, 0, 1, 0]
_SERIES_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def stored_hu(hu: np.ndarray) -> np.ndarray:
    """HU rounded and clipped to what a slice stores (int16, -1024..3071)."""
    return np.clip(np.rint(hu), HU_INTERCEPT, _STORED_MAX).astype(np.int16)


def content_uid(settings: dict[str, object], *parts: object) -> str:
    """A UID fixed by the settings that make an object's content and the parts naming it."""
    entropy = [json.dumps(settings, sort_keys=True), *map(str, parts)]
    return str(generate_uid(entropy_srcs=entropy))


@dataclass(frozen=True)
class CTSeries:
    """What every slice of one axial CT series shares: its patient, UIDs and pixel grid.

    `pixel_spacing_mm` is in DICOM's order: between rows (along y), then between columns.
    """

    patient_id: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    description: str = "stroke phantom head CT"

    @classmethod
    def from_uids(cls, uids: dict[str, str], **fields: object) -> CTSeries:
        """The series from a {StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID} map."""
        study, series, frame = (uids[role] for role in _SERIES_UIDS)
        return cls(study_uid=study, series_uid=series, frame_of_reference_uid=frame, **fields)

    @staticmethod
    def uids(settings: dict[str, object], *parts: object) -> dict[str, str]:
        """The study, series and frame-of-reference UIDs of the series that `parts` name."""
        return {role: content_uid(settings, *parts, role) for role in _SERIES_UIDS}

    def slice(
        self, hu: np.ndarray, instance_number: int, position_mm: Sequence[float], sop_uid: str
    ) -> Dataset:
        """One slice (rows x columns int16 HU) as a CT image, its first pixel at position_mm."""
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.Modality, ds.PatientID, ds.PatientName = "CT", self.patient_id, "ANONYMOUS"
        ds.StudyDescription = ds.SeriesDescription = self.description
        ds.StudyInstanceUID = self.study_uid
        ds.SeriesInstanceUID = self.series_uid
        ds.FrameOfReferenceUID = self.frame_of_reference_uid
        ds.SeriesNumber, ds.InstanceNumber = 1, instance_number
        ds.ImagePositionPatient = list(position_mm)
        ds.ImageOrientationPatient = _AXIAL
        ds.SliceLocation = position_mm[2]
        ds.SliceThickness = self.slice_thickness_mm
        ds.PixelSpacing = list(self.pixel_spacing_mm)
        ds.Rows, ds.Columns = hu.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = HU_INTERCEPT, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 80
        ds.PixelData = (hu.astype(np.int32) - HU_INTERCEPT).astype("<i2").tobytes()
        return ds

    def write_slice(
        self,
        path: Path,
        hu: np.ndarray,
        instance_number: int,
        position_mm: Sequence[float],
        sop_uid: str,
    ) -> None:
        """Write one slice as a DICOM file (with its preamble and file meta)."""
        ds = self.slice(hu, instance_number, position_mm, sop_uid)
        ds.save_as(path, enforce_file_format=True)
