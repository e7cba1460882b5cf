"""Whole volumes as samples (the 3-D tasks): NIfTI files or DICOM series, label volumes beside.

One sample is one scan: `path` the image volume (a `.nii`/`.nii.gz` file, or a folder
holding one DICOM series), `mask_path` its label volume (class indices, same geometry),
`patient_id` from `patient_regex` on the case name (every case its own patient without
one), `label` the lesion classes the label volume holds (`hemorrhage|infarct`, `none`),
on which splits and folds stratify as they do on a 2-D sample's class.

Layouts found under `root`:
- `images/<case>.nii.gz` with `labels/<case>.nii.gz` (stroke-synth layout=volumes);
- nnU-Net's raw layout, `imagesTr/<case>_0000.nii.gz` with `labelsTr/<case>.nii.gz`
  (`images=imagesTr labels=labelsTr`; the channel suffix `_0000` is not part of the case);
- `dicom/<case>/` holding one series (`images=dicom`), with `labels/<case>.nii.gz` in
  the series' geometry.
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from stroke.data.nifti import is_nifti, volume_stem
from stroke.data.samples import (
    Sample,
    compile_patient_regex,
    label_set_string,
    patient_id_from_name,
)
from stroke.errors import DatasetError

#: nnU-Net's channel suffix on image file names (`case_0000.nii.gz`)
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


def case_name(path: Path) -> str:
    """The case a volume belongs to: its file (or series folder) name without suffixes."""
    stem = volume_stem(path) if is_nifti(path) else path.name
    return _CHANNEL_SUFFIX.sub("", stem)


def is_dicom_series_folder(path: Path) -> bool:
    """A folder whose files are DICOM (`.dcm`, or any file with the DICM preamble)."""
    if not path.is_dir():
        return False
    for child in sorted(path.iterdir())[:4]:
        if child.is_file():
            if child.suffix.lower() == ".dcm":
                return True
            with child.open("rb") as f:
                head = f.read(132)
            if head[128:132] == b"DICM":
                return True
    return False


def label_classes_present(path: Path, lesion_classes: list[str]) -> list[str]:
    """The lesion classes whose index occurs in a label volume (an error naming the file
    for values beyond the classes)."""
    try:
        values = np.unique(np.asarray(nib.load(str(path)).dataobj))
    except Exception as err:  # nibabel raises many kinds for a damaged file
        raise DatasetError(f"cannot read label volume {path}: {err}") from err
    if np.any(values < 0) or np.any(values != np.round(values)):
        raise DatasetError(f"label volume {path} holds values that are not class indices")
    beyond = [int(v) for v in values if int(v) > len(lesion_classes)]
    if beyond:
        raise DatasetError(
            f"label volume {path} holds value(s) {beyond}, but data.lesion_classes="
            f"{lesion_classes} gives indices 1..{len(lesion_classes)} (0 is background)"
        )
    return [lesion_classes[int(v) - 1] for v in values if int(v) > 0]


class VolumeSource:
    """The scans under `root` with their label volumes.

    Args:
        root: the dataset folder.
        images: the folder of image volumes under root (NIfTI files, or one folder per DICOM
            series).
        labels: the folder of label volumes (`<case>.nii.gz`); null for unlabelled scans
            (prediction only).
        patient_regex: a regex on the case name whose `patient` (or first) group is the
            patient id, e.g. `^(p\\d+)_` for `p0001_s0`; null: every case its own patient.
        lesion_classes: what label values 1..K mean (set by the datamodule).
    """

    def __init__(
        self,
        root: str | Path,
        images: str = "images",
        labels: str | None = "labels",
        patient_regex: str | None = None,
        lesion_classes: list[str] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.images = images
        self.labels = labels
        self.patient_regex = compile_patient_regex(patient_regex)
        self.lesion_classes = list(lesion_classes or [])

    def __repr__(self) -> str:
        return f"VolumeSource(root={str(self.root)!r}, images={self.images!r})"

    def volumes(self) -> list[Path]:
        """Every image volume: NIfTI files and DICOM series folders, sorted by name."""
        folder = self.root / self.images
        if not self.root.is_dir():
            raise DatasetError(f"data.source.root={str(self.root)!r} is not a folder")
        if not folder.is_dir():
            raise DatasetError(
                f"{self.root} has no {self.images}/ folder of volumes; expected "
                f"{self.root}/{self.images}/<case>.nii.gz (or one DICOM series folder per case)"
            )
        found = [p for p in sorted(folder.iterdir()) if is_nifti(p) or is_dicom_series_folder(p)]
        if not found:
            raise DatasetError(
                f"{folder} holds no NIfTI volume (.nii, .nii.gz) nor DICOM series folder"
            )
        return found

    def label_of(self, volume: Path) -> Path | None:
        """The label volume of a case (`<labels>/<case>.nii.gz` or `.nii`), None if absent."""
        if self.labels is None:
            return None
        name = case_name(volume)
        for suffix in (".nii.gz", ".nii"):
            candidate = self.root / self.labels / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def load(self) -> list[Sample]:
        """One sample per labelled scan; a scan without its label volume is an error."""
        samples = []
        missing = []
        for volume in self.volumes():
            label_path = self.label_of(volume)
            if label_path is None and self.labels is not None:
                missing.append(volume)
                continue
            present = label_classes_present(label_path, self.lesion_classes) if label_path else []
            name = case_name(volume)
            samples.append(
                Sample(
                    path=volume,
                    label=label_set_string(present),
                    patient_id=patient_id_from_name(Path(name), self.patient_regex)
                    if self.patient_regex
                    else name,
                    mask_path=label_path,
                    series_id=name,
                )
            )
        if missing:
            raise DatasetError(
                f"{len(missing)} volume(s) have no label volume, e.g. {missing[0]} (expected "
                f"{self.root / str(self.labels) / (case_name(missing[0]) + '.nii.gz')})"
            )
        return samples
