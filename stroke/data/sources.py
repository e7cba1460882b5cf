"""Where samples come from: what a source must provide, and the image-file sources.

A source only lists samples (path, raw label, patient id, optional split); decoding,
splitting and class mapping happen in the datamodule, the same for every source. The
image-file sources are here (a folder per class, pre-split folders, a CSV of labels);
DICOM and NIfTI sources, which also decode their own format, live in their own modules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stroke.data.label_table import read_csv_rows
from stroke.data.readers import image_suffixes
from stroke.data.samples import (
    Sample,
    compile_patient_regex,
    label_set_string,
    patient_id_from_name,
)
from stroke.errors import DatasetError


@runtime_checkable
class ImageSource(Protocol):
    """What the datamodule needs of any source (`data.source` in the configs).

    `load()` lists the samples: path, raw label, patient id, and a split when the data
    comes pre-split. The source's `repr` names it in log lines and errors (e.g.
    `FolderSource(root='data/phantom')`), so it should say where the data is.
    """

    def load(self) -> list[Sample]:
        """Every labelled sample of the source; a DatasetError naming the file when one is bad."""
        ...


@runtime_checkable
class DecodingSource(ImageSource, Protocol):
    """A source whose files the generic image reader cannot decode (DICOM in HU, NIfTI slices).

    `read` returns the sample's image at native resolution as uint8 H x W x `in_chans`
    (the datamodule letterboxes and caches it); `preprocessing_record` returns the plain
    values a checkpoint must keep so that `stroke-predict` reads a raw file of this format
    as training did (e.g. `{"dicom_windows": [...]}`), or `{}` when it cannot.
    """

    def read(self, sample: Sample, in_chans: int) -> np.ndarray:
        """The sample's pixels, uint8 H x W x in_chans."""
        ...

    def preprocessing_record(self) -> dict[str, Any]:
        """Plain values saved in checkpoints beside size and normalisation."""
        ...


#: Folder names accepted for each split of a pre-split dataset (compared case-insensitively).
SPLIT_FOLDER_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def _existing_dir(root: str | Path, key: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{key}={str(root)!r} does not exist (expected a folder of images)")
    if not path.is_dir():
        raise DatasetError(f"{key}={str(root)!r} is not a folder")
    return path


def _visible_subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    """Image files below `folder`, hidden files and folders skipped, in path order.

    os.walk rather than Path.rglob: an archive's hundreds of thousands of files are
    listed several times faster, in the same order.
    """
    suffixes = image_suffixes()  # the registry's single-image formats (stroke.data.readers)
    found: list[tuple[tuple[str, ...], str, str]] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        parts = Path(current).parts
        found.extend(
            ((*parts, name), current, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes
        )
    found.sort()  # by path components: the order of sorted Path objects, at tuple speed
    return [Path(current, name) for _, current, name in found]


def mask_beside(root: Path, mask_dir: str | None, image: Path) -> Path | None:
    """`<root>/<mask_dir>/<the image's path relative to root>`, or None without mask_dir.

    The path is given even when no file is there: segmentation reports the image and
    the mask it looked for together.
    """
    return root / mask_dir / image.relative_to(root) if mask_dir else None


class FolderSource:
    """A folder per class: `<root>/<class>/**/<image>`; the folder name is the label.

    `mask_dir` (e.g. `masks`, for segmentation): each image's lesion mask is
    `<root>/<mask_dir>/<same relative path>`; that folder is never read as a class.
    """

    def __init__(
        self,
        root: str | Path,
        patient_regex: str | None = None,
        ignore_dirs: tuple[str, ...] | list[str] = ("masks",),
        mask_dir: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.patient_regex = compile_patient_regex(patient_regex)
        self.mask_dir = mask_dir
        self.ignore_dirs = {d.lower() for d in ignore_dirs} | (
            {mask_dir.lower()} if mask_dir else set()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

    def load(self) -> list[Sample]:
        """List every image under the class folders of `root`."""
        root = _existing_dir(self.root, "data.root")
        return self._scan_class_folders(root, split=None)

    def _scan_class_folders(self, folder: Path, split: str | None) -> list[Sample]:
        root = self.root.expanduser()
        class_dirs = [d for d in _visible_subdirs(folder) if d.name.lower() not in self.ignore_dirs]
        if not class_dirs:
            raise DatasetError(
                f"{folder} has no class folders; expected <root>/<class>/<images> "
                f"(e.g. {folder}/normal/001.png)"
            )
        samples = []
        for class_dir in class_dirs:
            images = list(_images_under(class_dir))
            if not images:
                raise DatasetError(
                    f"class folder {class_dir} holds no images "
                    f"(looked for {', '.join(sorted(image_suffixes()))}); "
                    "remove it or add its images"
                )
            samples.extend(
                Sample(
                    path=image,
                    label=class_dir.name,
                    patient_id=patient_id_from_name(image, self.patient_regex),
                    split=split,
                    mask_path=mask_beside(root, self.mask_dir, image),
                )
                for image in images
            )
        return samples


class PresplitSource(FolderSource):
    """Pre-split folders: `<root>/train|val|valid|validation|test/<class>/<image>` (any case).

    A missing validation or test folder is carved out of train by the datamodule.
    """

    def load(self) -> list[Sample]:
        """List every image of every split folder found under `root`."""
        root = _existing_dir(self.root, "data.root")
        by_name = {d.name.lower(): d for d in _visible_subdirs(root)}
        samples = []
        for split, names in SPLIT_FOLDER_NAMES.items():
            found = [by_name[n] for n in names if n in by_name]
            if len(found) > 1:
                raise DatasetError(
                    f"{root} has several {split} folders {[f.name for f in found]}; keep one"
                )
            if found:
                samples.extend(self._scan_class_folders(found[0], split=split))
        if not any(s.split == "train" for s in samples):
            raise DatasetError(
                f"{root} has no train folder; expected train/, val/ (or valid/, validation/) "
                "and test/ folders, each with a folder per class (or use data=folder)"
            )
        return samples


#: the cells of a 0/1 label column (source.label_columns)
_TRUE, _FALSE = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no")


class CsvSource:
    """A CSV of labels whose rows name images by path, or by an id put into `path_template`."""

    def __init__(
        self,
        csv_path: str | Path,
        label_column: str = "label",
        path_column: str | None = "path",
        id_column: str | None = None,
        path_template: str | None = None,
        image_root: str | Path | None = None,
        patient_column: str | None = None,
        patient_regex: str | None = None,
        split_column: str | None = None,
        mask_column: str | None = None,
        mask_dir: str | None = None,
        label_columns: Sequence[str] | None = None,
    ) -> None:
        if (id_column is None) == (path_column is None):
            raise DatasetError(
                "a CSV source needs exactly one of path_column (rows name image paths) or "
                f"id_column with path_template; got path_column={path_column!r}, "
                f"id_column={id_column!r}"
            )
        if id_column is not None and not path_template:
            raise DatasetError(
                f"id_column={id_column!r} needs a path_template such as 'images/{{id:03d}}.png'"
            )
        self.csv_path = Path(csv_path)
        self.label_column = label_column
        self.path_column = path_column
        self.id_column = id_column
        self.path_template = path_template
        self.image_root = Path(image_root) if image_root is not None else None
        self.patient_column = patient_column
        self.patient_regex = compile_patient_regex(patient_regex)
        self.split_column = split_column
        # lesion masks (segmentation): a column of paths, or the image's path under mask_dir
        self.mask_column = mask_column
        self.mask_dir = mask_dir
        # multi-label: one 0/1 column per label; the sample's label is its label set
        if label_columns is not None and (isinstance(label_columns, str) or not label_columns):
            raise DatasetError(
                f"source.label_columns must be a list of column names, got {label_columns!r}"
            )
        self.label_columns = list(label_columns) if label_columns is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(csv_path={str(self.csv_path)!r})"

    def load(self) -> list[Sample]:
        """Read the CSV and turn each row into a sample whose image exists."""
        if not self.csv_path.is_file():
            raise DatasetError(
                f"CSV of labels {str(self.csv_path)!r} does not exist (source.csv_path)"
            )
        image_root = self.image_root or self.csv_path.parent
        rows = read_csv_rows(self.csv_path, "source.csv_path")
        if not rows:
            raise DatasetError(f"CSV of labels {self.csv_path} is empty")
        # Real exports carry stray spaces around headers ("id, hemorrhage") and values.
        header = [h.strip() for h in rows[0]]
        columns = {name: i for i, name in enumerate(header)}
        wanted = {
            "label_column": None if self.label_columns else self.label_column,
            "path_column": self.path_column,
            "id_column": self.id_column,
            "patient_column": self.patient_column,
            "split_column": self.split_column,
            "mask_column": self.mask_column,
        }
        wanted.update({f"label_columns[{i}]": c for i, c in enumerate(self.label_columns or [])})
        for key, name in wanted.items():
            if name is not None and name not in columns:
                raise DatasetError(
                    f"source.{key}={name!r} is not a column of {self.csv_path}; "
                    f"its columns are {header}"
                )
        samples, missing = [], []
        for line_no, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            cell = {name: row[i].strip() if i < len(row) else "" for name, i in columns.items()}
            path = image_root / self._relative_path(cell, line_no)
            if not path.is_file():
                missing.append(f"line {line_no}: {path}")
                continue
            if self.patient_column is not None:
                patient_id = cell[self.patient_column]
            else:
                patient_id = patient_id_from_name(path, self.patient_regex)
            split = self._split(cell, line_no) if self.split_column else None
            mask = self._mask_path(cell, image_root, path)
            label = self._label(cell, line_no)
            samples.append(Sample(path, label, patient_id, split, None, mask))
        if missing:
            shown = "; ".join(missing[:5]) + (
                f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise DatasetError(
                f"{len(missing)} row(s) of {self.csv_path} name images that do not exist: {shown}"
            )
        if not samples:
            raise DatasetError(f"CSV of labels {self.csv_path} has no data rows")
        return samples

    def _label(self, cell: dict[str, str], line_no: int) -> str:
        """The row's label: its label cell, or with label_columns its label set."""
        if self.label_columns is None:
            return cell[self.label_column]
        positives = []
        for column in self.label_columns:
            value = cell[column].lower()
            if value not in _TRUE + _FALSE:
                raise DatasetError(
                    f"{self.csv_path} line {line_no}: column {column!r} holds {cell[column]!r}; "
                    "a label column holds 0 or 1"
                )
            if value in _TRUE:
                positives.append(column)
        return label_set_string(positives)

    def _mask_path(self, cell: dict[str, str], image_root: Path, image: Path) -> Path | None:
        """The row's lesion mask: its mask_column cell, else the image's path under mask_dir."""
        if self.mask_column is not None:
            return image_root / cell[self.mask_column] if cell[self.mask_column] else None
        return mask_beside(image_root, self.mask_dir, image) if self.mask_dir else None

    def _relative_path(self, cell: dict[str, str], line_no: int) -> str:
        if self.path_column is not None:
            return cell[self.path_column]
        raw_id = cell[self.id_column]
        value: int | str = int(raw_id) if raw_id.lstrip("-").isdigit() else raw_id
        try:
            return self.path_template.format(id=value)
        except (ValueError, KeyError, IndexError) as err:
            raise DatasetError(
                f"path_template {self.path_template!r} cannot format id {raw_id!r} "
                f"(line {line_no} of {self.csv_path}): {err}"
            ) from err

    def _split(self, cell: dict[str, str], line_no: int) -> str:
        value = cell[self.split_column].lower()
        for split, names in SPLIT_FOLDER_NAMES.items():
            if value in names:
                return split
        raise DatasetError(
            f"split {cell[self.split_column]!r} on line {line_no} of {self.csv_path} is not "
            "one of train, val (valid, validation), test"
        )
