"""Writing the volume phantom (`stroke-synth layout=volumes`): NIfTI, DICOM and cases.csv.

What a case holds is stroke.synth.volumes' business; this module stores it, reuses a folder
written with the same settings, and refuses to replace anything it did not write:

    <out_dir>/images/<case>.nii.gz     int16 HU, no rescaling; RAS or LPS affine, head at 0
    <out_dir>/labels/<case>.nii.gz     uint8 labels, the same grid and affine
    <out_dir>/dicom/<case>/NNNN.dcm    the same scan as a CT series, one file a slice
    <out_dir>/cases.csv                a row a case (CASE_COLUMNS)
    <out_dir>/phantom.json             the settings; written last, it marks a complete folder
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from stroke.data.samples import label_set_string
from stroke.io import atomic_write_text, atomic_writer
from stroke.synth import series
from stroke.synth.ct_dicom import CTSeries, content_uid
from stroke.synth.reuse import reusable
from stroke.synth.volume_lesions import LESION_CLASSES
from stroke.synth.volumes import GENERATOR_VERSION, VolumeCase, VolumePhantomConfig, render_patient

__all__ = ["CASE_COLUMNS", "generate_volume_phantom"]

#: cases.csv's columns; paths are relative to the folder, volumes in mL (voxels x voxel size).
CASE_COLUMNS: tuple[str, ...] = (
    "case",
    "patient_id",
    "path",
    "label_path",
    "dicom_dir",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "orientation",
    "hemorrhage_ml",
    "infarct_ml",
    "lesions",
)
_IMAGES, _LABELS, _DICOM = "images", "labels", "dicom"
_CSV, _RECORD = "cases.csv", "phantom.json"
_CASE = r"p\d{4,}_s\d+"
_VOLUME_FILE = re.compile(rf"^{_CASE}\.nii\.gz$")
_CASE_FOLDER = re.compile(rf"^{_CASE}$")
_SLICE_FILE = re.compile(r"^\d{4,}\.dcm$")


def _settings(config: VolumePhantomConfig) -> dict[str, object]:
    """What decides the files' content: the config, the layout and the generator version."""
    return {
        "layout": "volumes",
        **asdict(config),
        "spacing": list(config.spacing),
        "generator_version": GENERATOR_VERSION,
    }


def _write_nifti(path: Path, case: VolumeCase, volume: np.ndarray, dtype: type) -> None:
    """One volume in the case's stored orientation, stored values as they are (no scaling)."""
    affine = case.affine
    image = nib.Nifti1Image(np.asarray(case.stored(volume), dtype=dtype), affine)
    image.set_qform(affine, code=1)  # scanner coordinates
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def _write_dicom(folder: Path, case: VolumeCase, settings: dict[str, object]) -> None:
    """The case as a CT series: slice k at ImagePositionPatient origin + k * z spacing."""
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = case.spacing_mm
    ct = CTSeries.from_uids(
        CTSeries.uids(settings, case.name),
        patient_id=case.patient_id,
        pixel_spacing_mm=(sy, sx),  # between rows (along y), then between columns
        slice_thickness_mm=sz,
    )
    x0, y0, z0 = case.origin_lps_mm
    for k in range(case.hu.shape[2]):
        position = [round(float(x0), 4), round(float(y0), 4), round(float(z0 + k * sz), 4)]
        sop_uid = content_uid(settings, case.name, "SOPInstanceUID", k)
        # rows along y, columns along x: the LPS volume's slice, transposed
        ct.write_slice(folder / f"{k + 1:04d}.dcm", case.hu[:, :, k].T, k + 1, position, sop_uid)


def _write_case(out_dir: Path, case: VolumeCase, settings: dict[str, object]) -> list[str]:
    """Write one case's files; returns its cases.csv row."""
    image, labels = f"{_IMAGES}/{case.name}.nii.gz", f"{_LABELS}/{case.name}.nii.gz"
    dicom = f"{_DICOM}/{case.name}"
    _write_nifti(out_dir / image, case, case.hu, np.int16)
    _write_nifti(out_dir / labels, case, case.labels, np.uint8)
    _write_dicom(out_dir / dicom, case, settings)
    volumes = [f"{case.volume_ml(i + 1):.3f}" for i in range(len(LESION_CLASSES))]
    spacing = [f"{s:g}" for s in case.spacing_mm]
    return [case.name, case.patient_id, image, labels, dicom, *spacing, case.orientation,
            *volumes, label_set_string(case.classes)]  # fmt: skip


def _owned(out_dir: Path) -> list[Path]:
    """The files and case folders under out_dir this generator writes."""
    paths = [out_dir / name for name in (_CSV, _RECORD)]
    for folder in (_IMAGES, _LABELS):
        if (out_dir / folder).is_dir():
            paths += [p for p in (out_dir / folder).iterdir() if _VOLUME_FILE.match(p.name)]
    if (out_dir / _DICOM).is_dir():
        for case in (out_dir / _DICOM).iterdir():
            if case.is_dir() and _CASE_FOLDER.match(case.name):
                paths += [p for p in case.iterdir() if _SLICE_FILE.match(p.name)]
    return [p for p in paths if p.is_file()]


def _folders(out_dir: Path) -> list[Path]:
    """The folders this generator makes, deepest first."""
    cases = out_dir / _DICOM
    found = [p for p in cases.iterdir() if _CASE_FOLDER.match(p.name)] if cases.is_dir() else []
    return [*found, cases, out_dir / _IMAGES, out_dir / _LABELS]


def _only_generated(out_dir: Path) -> bool:
    """Whether every file and folder under out_dir is one this generator writes."""
    owned = set(_owned(out_dir)) | set(_folders(out_dir))
    return all(path in owned for path in out_dir.rglob("*"))


def _remove_generated(out_dir: Path) -> None:
    """Delete only the files stroke-synth writes (any layout's), sparing anything else."""
    for path in _owned(out_dir):
        path.unlink()
    series._remove_generated(out_dir)  # another layout's phantom in the same folder before
    for folder in _folders(out_dir):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def generate_volume_phantom(
    out_dir: str | Path,
    config: VolumePhantomConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the volume phantom to out_dir and return the path to its cases.csv.

    An existing folder written with the same settings is reused as is. Any other non-empty
    folder raises FileExistsError unless overwrite=True, which deletes only the files
    stroke-synth owns (this layout's and the other layouts'), never anything else.
    """
    config = config or VolumePhantomConfig()
    out_dir = Path(out_dir)
    if reusable(
        out_dir, config, _settings(config), _CSV, _only_generated, _remove_generated, overwrite
    ):
        return out_dir / _CSV
    for folder in (_IMAGES, _LABELS, _DICOM):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    settings = _settings(config)
    uid_settings = {k: v for k, v in settings.items() if k != "n_patients"}
    rows = []
    bar = tqdm(range(config.n_patients), desc="phantom", unit="patient", disable=not progress)
    for index in bar:
        rows += [_write_case(out_dir, case, uid_settings) for case in render_patient(config, index)]
    with atomic_writer(out_dir / _CSV, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CASE_COLUMNS)
        writer.writerows(rows)
    record = {"settings": settings, "cases": [row[0] for row in rows]}
    # Written last: its presence marks a complete dataset that later calls may reuse.
    atomic_write_text(out_dir / _RECORD, json.dumps(record, indent=2) + "\n")
    return out_dir / _CSV
