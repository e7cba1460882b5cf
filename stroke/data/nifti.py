"""NIfTI volumes as samples: every axial slice of every `.nii`/`.nii.gz` is one image.

Slices are cut along the volume's superior-inferior axis whatever its voxel order, and
shown as a DICOM axial image is (anterior up, the patient's right on the image's left),
so a model sees NIfTI and DICOM data the same way. Slice 0 is the most inferior.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from stroke.data.decoding import decoding
from stroke.data.label_table import check_all_keys_found, read_label_table
from stroke.data.samples import Sample, compile_patient_regex, patient_id_from_name
from stroke.data.windowing import (
    WindowSpec,
    apply_windows,
    check_windows_fit,
    describe_windows,
    resolve_windows,
    windows_record,
)
from stroke.errors import DatasetError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """True for `.nii` and `.nii.gz` files."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def volume_stem(path: Path) -> str:
    """The file name without `.nii` / `.nii.gz`."""
    return re.sub(r"\.nii(\.gz)?$", "", path.name, flags=re.IGNORECASE)


@functools.lru_cache(maxsize=16)
def _open_volume(path: str) -> nib.Nifti1Image:
    # nib.load reads the header only; pixel data is read slice by slice from the proxy
    return nib.load(path)


def volume_geometry(path: Path) -> tuple[int, int, np.ndarray]:
    """(axial axis, number of axial slices, voxel-to-RAS orientation) of a 3-D volume.

    A 4-D volume with a single volume along the 4th axis counts as 3-D; anything else is
    an error naming the file and its shape.
    """
    try:
        img = _open_volume(str(path))
    except Exception as err:  # nibabel raises many types for a damaged file
        raise DatasetError(f"cannot read NIfTI volume {path}: {err}") from err
    shape = tuple(int(n) for n in img.shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise DatasetError(
            f"NIfTI file {path} has shape {shape} ({len(shape)}-D); expected a 3-D volume "
            "(x, y, z) or a 4-D one with a single volume; split 4-D series into 3-D files"
        )
    ornt = nib.orientations.io_orientation(img.affine)
    axial = int(np.flatnonzero(ornt[:, 0] == 2)[0])  # the voxel axis closest to inferior-superior
    return axial, shape[axial], ornt


def read_axial_slice(path: Path, index: int) -> np.ndarray:
    """Axial slice `index` (0 = most inferior) as float32 values, displayed like DICOM."""
    axial, _, ornt = volume_geometry(path)
    img = _open_volume(str(path))
    with decoding(path, "NIfTI volume"):  # a truncated or corrupt stream fails here
        plane = np.asarray(img.dataobj[axial_slicer(path, index)], dtype=np.float32)
    plane = _finite(plane, path, index)
    in_plane = [a for a in range(3) if a != axial]
    if int(ornt[in_plane[0], 0]) == 1:  # voxel axes are (A/P, R/L): make them (R/L, A/P)
        plane, in_plane = plane.T, in_plane[::-1]
    if ornt[in_plane[0], 1] < 0:
        plane = plane[::-1, :]
    if ornt[in_plane[1], 1] < 0:
        plane = plane[:, ::-1]
    # plane[x, y] with x to the right, y to the front; rows anterior first, columns from
    # the patient's right: the radiological view of a DICOM axial slice
    return np.ascontiguousarray(plane.T[::-1, ::-1])


def _finite(plane: np.ndarray, path: Path, index: int) -> np.ndarray:
    """NaN or infinite voxels (outside the field of view, in some exports) read as the
    slice's lowest finite value, its background; a slice with none is an error, never an
    arbitrary grey."""
    finite = np.isfinite(plane)
    if finite.all():
        return plane
    if not finite.any():
        raise DatasetError(
            f"NIfTI volume {path}: axial slice {index} holds no finite value (all NaN or "
            "infinite); fix the export, or leave the volume out"
        )
    return np.where(finite, plane, plane[finite].min()).astype(np.float32)


def axial_slicer(path: Path, index: int) -> tuple:
    """The voxel-array index of axial slice `index` (0 = most inferior) of a volume."""
    axial, n_slices, ornt = volume_geometry(path)
    if not 0 <= index < n_slices:
        raise DatasetError(
            f"NIfTI volume {path} has {n_slices} axial slices; {index} does not exist"
        )
    slicer: list[int | slice] = [slice(None)] * len(_open_volume(str(path)).shape)
    slicer[axial] = index if ornt[axial, 1] > 0 else n_slices - 1 - index
    if len(slicer) == 4:
        slicer[3] = 0
    return tuple(slicer)


def to_voxel_plane(path: Path, displayed: np.ndarray) -> np.ndarray:
    """The inverse of `read_axial_slice`'s view: a displayed slice back in voxel order.

    `volume[axial_slicer(path, k)] = to_voxel_plane(path, slice_k)` writes, e.g., a
    predicted mask into a volume of the input's geometry.
    """
    axial, _, ornt = volume_geometry(path)
    plane = np.asarray(displayed)[::-1, ::-1].T
    in_plane = [a for a in range(3) if a != axial]
    transposed = int(ornt[in_plane[0], 0]) == 1
    if transposed:
        in_plane = in_plane[::-1]
    if ornt[in_plane[1], 1] < 0:
        plane = plane[:, ::-1]
    if ornt[in_plane[0], 1] < 0:
        plane = plane[::-1, :]
    return np.ascontiguousarray(plane.T if transposed else plane)


def axial_spacing_mm(path: Path) -> tuple[float, float, float]:
    """(row, column, slice) spacing in mm of the axial slices `read_axial_slice` returns.

    Rows run anterior-posterior and columns right-left, whatever the voxel order.
    """
    axial, _, ornt = volume_geometry(path)
    zooms = [float(z) for z in _open_volume(str(path)).header.get_zooms()[:3]]
    axis_of = {int(ornt[a, 0]): a for a in range(3)}  # RAS axis (0 R/L, 1 A/P) -> voxel axis
    return zooms[axis_of[1]], zooms[axis_of[0]], zooms[axial]


class NiftiSource:
    """Axial slices of NIfTI volumes under `root`: `<root>/<class>/<volume>.nii[.gz]`.

    Args:
        root: folder of volumes (any depth below the class folders).
        labels_csv: a CSV of labels keyed by the volume's path relative to root; None
            takes the label from the first folder below root.
        csv_key_column, label_column: the CSV's key and label columns.
        patient_regex: regex on the file name whose first group is the patient id;
            None: each volume is its own patient (file name without .nii/.nii.gz).
        mask_dir: folder (relative to root) mirroring the volumes with lesion masks of
            the same geometry, kept on each sample for segmentation; missing is fine.
        window / multi_window: as for DICOM (presets in HU; `minmax` for MRI).
        slice_step: keep every n-th axial slice (neighbouring thin slices add little).
    """

    def __init__(
        self,
        root: str | Path,
        labels_csv: str | Path | None = None,
        csv_key_column: str = "path",
        label_column: str = "label",
        patient_regex: str | None = None,
        mask_dir: str | None = "masks",
        window: WindowSpec = "brain",
        multi_window: Sequence[WindowSpec] | None = None,
        slice_step: int = 1,
    ) -> None:
        if not isinstance(slice_step, int) or slice_step < 1:
            raise DatasetError(f"source.slice_step must be an integer >= 1, got {slice_step!r}")
        self.root = Path(root)
        self.labels_csv = Path(labels_csv) if labels_csv else None
        self.csv_key_column = csv_key_column
        self.label_column = label_column
        self.patient_regex = compile_patient_regex(patient_regex)
        self.mask_dir = mask_dir
        window = dict(window) if isinstance(window, Mapping) else window
        self.windows = resolve_windows(window, None if multi_window is None else list(multi_window))
        self.slice_step = slice_step

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, "
            f"window={describe_windows(self.windows)})"
        )

    def load(self) -> list[Sample]:
        """One sample per kept axial slice of every volume, volumes in path order."""
        volumes = self._volumes()
        labels = self._labels(volumes)
        self.left_out = [
            (str(p), f"no label in {self.labels_csv}") for p in volumes if p not in labels
        ]
        samples = []
        for path in volumes:
            if path not in labels:
                continue
            _, n_slices, _ = volume_geometry(path)
            mask = self._mask_of(path)
            patient = (
                patient_id_from_name(path, self.patient_regex)
                if self.patient_regex is not None
                else volume_stem(path)
            )
            samples.extend(
                Sample(path, labels[path], patient, slice_index=k, mask_path=mask)
                for k in range(0, n_slices, self.slice_step)
            )
        if not samples:
            raise DatasetError(
                f"no NIfTI volume under {self.root} has a label in {self.labels_csv}"
            )
        return samples

    def read(self, sample: Sample, in_chans: int) -> np.ndarray:
        """The sample's axial slice through the window(s), uint8 HxWxC at native size."""
        check_windows_fit(self.windows, in_chans)
        if sample.slice_index is None:
            raise DatasetError(
                f"sample of {sample.path} has no slice_index; NIfTI samples need one"
            )
        return apply_windows(
            read_axial_slice(sample.path, sample.slice_index), self.windows, in_chans
        )

    def preprocessing_record(self) -> dict[str, list]:
        """The window(s) in checkpoints: stroke-predict reads a DICOM file, or (segmenters) a
        NIfTI volume, through the values the model was trained on."""
        return {"dicom_windows": windows_record(self.windows)}

    def read_mask(self, sample: Sample) -> np.ndarray | None:
        """The label mask of the sample's slice (its integer values, same view), or None.

        Binary (0/1) and multi-label volumes (0 background, 1 hemorrhage, 2 infarct...)
        alike; `data.masks` says what the values mean.
        """
        if sample.mask_path is None or sample.slice_index is None:
            return None
        values = read_axial_slice(sample.mask_path, sample.slice_index)
        labels = np.rint(values)
        if not np.array_equal(labels, values):
            raise DatasetError(
                f"mask {sample.mask_path} of {sample.path} holds non-integer values on slice "
                f"{sample.slice_index} (e.g. {values[labels != values][0]}); a label volume "
                "holds integers (resampled with nearest neighbour)"
            )
        return labels.astype(np.int64)

    # -- helpers ---------------------------------------------------------------------------
    def _volumes(self) -> list[Path]:
        root = self.root.expanduser()
        if not root.is_dir():
            raise DatasetError(
                f"data.root={str(self.root)!r} is not an existing folder (expected NIfTI volumes)"
            )
        masks = (root / self.mask_dir) if self.mask_dir else None
        volumes = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file()
            and is_nifti(p)
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and not (masks is not None and p.is_relative_to(masks))
        ]
        if not volumes:
            raise DatasetError(
                f"data.root={str(self.root)!r} holds no .nii or .nii.gz volume; expected "
                "<root>/<class>/<volume>.nii.gz"
            )
        return volumes

    def _labels(self, volumes: list[Path]) -> dict[Path, str]:
        relative = {p: p.relative_to(self.root.expanduser()).as_posix() for p in volumes}
        if self.labels_csv is None:
            loose = [r for r in relative.values() if "/" not in r]
            if loose:
                raise DatasetError(
                    f"{len(loose)} volume(s) lie directly in {self.root} (e.g. {loose[0]}); "
                    "labels come from the first folder below data.root (<root>/<class>/...), "
                    "so move them into class folders or give source.labels_csv"
                )
            return {p: r.split("/", 1)[0] for p, r in relative.items()}
        table = read_label_table(self.labels_csv, self.csv_key_column, self.label_column)
        check_all_keys_found(
            table, relative.values(), "volume path", self.labels_csv, str(self.root)
        )
        return {p: table[r] for p, r in relative.items() if r in table}

    def _mask_of(self, volume: Path) -> Path | None:
        if not self.mask_dir:
            return None
        root = self.root.expanduser()
        mask = root / self.mask_dir / volume.relative_to(root)
        if not mask.is_file():
            return None
        if _open_volume(str(mask)).shape[:3] != _open_volume(str(volume)).shape[:3]:
            raise DatasetError(
                f"mask {mask} has shape {_open_volume(str(mask)).shape}, its volume {volume} "
                f"{_open_volume(str(volume)).shape}; a mask must match its volume voxel for voxel"
            )
        return mask
