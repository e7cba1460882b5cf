"""Build small DICOM files and trees for tests: CT slices in HU, non-image objects, copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

from stroke.data.dicom_pixels import has_dicom_preamble

CQ500 = "cq500_dicom_sample"


def ct_dataset(
    hu: np.ndarray,
    patient_id: str = "P001",
    instance: int = 1,
    z: float = 0.0,
    slope: float = 1.0,
    intercept: float = -1024.0,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """A CT slice whose stored values are (hu - intercept) / slope, 16-bit signed."""
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope).astype(np.int16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.tobytes()
    return ds


def save(ds: Dataset, path: Path, preamble: bool = True) -> Path:
    """Write `ds` to `path` (creating folders), as Part 10 or as a bare data set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        bare = Dataset()
        bare.update(ds)
        pydicom.dcmwrite(path, bare, implicit_vr=True, little_endian=True)
        assert not has_dicom_preamble(path)
    return path


def non_image_objects(folder: Path) -> dict[str, Path]:
    """A DICOMDIR, a structured report, a file without pixel data and a text file."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    dicomdir = Dataset()
    dicomdir.file_meta = FileMetaDataset()
    dicomdir.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    dicomdir.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dicomdir.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicomdir.FileSetID = "TEST"
    out["dicomdir"] = save(dicomdir, folder / "DICOMDIR")
    out["sr"] = Path(shutil.copy(pydicom.data.get_testdata_file("test-SR.dcm"), folder / "report"))
    rtplan = pydicom.data.get_testdata_file("rtplan.dcm")
    out["no_pixels"] = Path(shutil.copy(rtplan, folder / "plan.dcm"))
    out["text"] = folder / "README.txt"
    out["text"].write_text("exported by PACS\n")
    return out


def cq500_labelled_tree(cq500: Path, root: Path, patients: int = 8) -> Path:
    """The CQ500 sample slices spread over `patients` synthetic patients in two class folders.

    Files keep their JPEG Lossless pixel data; PatientID is rewritten, the layout nests
    `<class>/<patient>/<series>/` and half the files have no extension.
    """
    files = sorted((cq500 / "CQ500-CT-0").glob("*.dcm"))
    for i, src in enumerate(files):
        ds = pydicom.dcmread(src)
        patient = i % patients
        ds.PatientID = f"CQ{patient:02d}"
        label = "normal" if patient % 2 == 0 else "hemorrhage"
        name = f"IM{i:04d}" + (".dcm" if i % 2 else "")
        save(ds, root / label / ds.PatientID / "series1" / name)
    return root


def head_slice_hu(size: int, bleed: bool, rng: np.random.Generator) -> np.ndarray:
    """A head CT slice in HU: air, a bone ring, brain (~30 HU) and, if `bleed`, a 70 HU blob."""
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    hu = np.full((size, size), -1000.0)
    hu[radius < size * 0.45] = 1000.0
    hu[radius < size * 0.40] = 30.0
    hu += rng.normal(0, 4, hu.shape) * (radius < size * 0.40)
    if bleed:
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        hu[np.hypot(yy - cy, xx - cx) < size * 0.1] = 70.0
    return hu


def synthetic_ct_tree(root: Path, patients: int = 8, slices: int = 3, size: int = 48) -> Path:
    """`<root>/<normal|hemorrhage>/<patient>/IM<n>.dcm`: one study per patient, in HU."""
    rng = np.random.default_rng(7)
    for p in range(patients):
        label = "hemorrhage" if p % 2 else "normal"
        study, series = generate_uid(), generate_uid()
        for s in range(slices):
            ds = ct_dataset(
                head_slice_hu(size, label == "hemorrhage", rng),
                patient_id=f"SYN{p:02d}",
                instance=s + 1,
                z=5.0 * s,
                study_uid=study,
                series_uid=series,
            )
            save(ds, root / label / f"SYN{p:02d}" / f"IM{s:03d}.dcm")
    return root
