"""DICOM exports as samples: every image in a folder tree, labelled, with its patient id.

`DicomSource` lists the images (any depth, with or without `.dcm`), skips what is not an
image (DICOMDIR, structured reports, files without pixel data) with a count in the log,
and reads each one in Hounsfield units through the configured window(s).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import UID
from tqdm.auto import tqdm

from stroke.data.dicom_pixels import (
    frame_count,
    is_dicomdir,
    is_structured_report,
    read_dicom_image,
    read_header,
    require_decoder,
    slice_position,
    transfer_syntax,
)
from stroke.data.label_table import check_all_keys_found, read_label_table
from stroke.data.samples import Sample
from stroke.data.windowing import (
    WindowSpec,
    check_windows_fit,
    describe_windows,
    resolve_windows,
    windows_record,
)
from stroke.errors import DatasetError

log = logging.getLogger(__name__)

#: What a CSV of labels can be keyed by, and the column name assumed for each.
CSV_KEYS = {"sop_instance_uid": "SOPInstanceUID", "path": "path", "patient_id": "PatientID"}


@dataclass(frozen=True)
class DicomImage:
    """What the scan keeps of one DICOM image file."""

    path: Path
    relative: str
    sop_uid: str
    patient_id: str
    study_uid: str
    series_uid: str
    position: float | None
    instance: int | None
    frames: int
    transfer_syntax: str


class WindowedDicomReader:
    """What every DICOM source shares: its HU windows, their checkpoint record, and reading
    a sample through them (`read`, the `DecodingSource` half)."""

    root: Path
    windows: list
    #: read files with the 12-bit offset fault through `corrected_offset` (the RSNA source)
    correct_offset = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, "
            f"window={describe_windows(self.windows)})"
        )

    def preprocessing_record(self) -> dict[str, list]:
        """Saved in every checkpoint: how stroke-predict reads a raw DICOM file as training did."""
        return {"dicom_windows": windows_record(self.windows)}

    def read(self, sample: Sample, in_chans: int) -> np.ndarray:
        """The sample's image at native resolution: HU through the window(s), uint8 HxWxC."""
        check_windows_fit(self.windows, in_chans)
        return read_dicom_image(
            sample.path, self.windows, in_chans, sample.slice_index, self.correct_offset
        )


class DicomSource(WindowedDicomReader):
    """A folder tree of DICOM files; labels from `<root>/<class>/...` or a CSV of labels.

    Args:
        root: the folder to scan, at any depth; files need no `.dcm` extension.
        labels_csv: a CSV of labels; None takes the label from the first folder under root.
        csv_key: what the CSV's key column holds: `sop_instance_uid`, `path` (relative to
            root) or `patient_id` (one label for all of a patient's images).
        csv_key_column: that column's name (default SOPInstanceUID, path or PatientID).
        label_column: the CSV column holding the label.
        window: a preset (brain, subdural, stroke, bone), `{width, level}` in HU, `minmax`
            or `dicom` (the file's own WindowCenter/WindowWidth).
        multi_window: three windows stacked as the three channels (needs in_chans=3).
        progress: show a progress bar while scanning large trees.
    """

    def __init__(
        self,
        root: str | Path,
        labels_csv: str | Path | None = None,
        csv_key: str = "sop_instance_uid",
        csv_key_column: str | None = None,
        label_column: str = "label",
        window: WindowSpec = "brain",
        multi_window: Sequence[WindowSpec] | None = None,
        progress: bool = True,
    ) -> None:
        if csv_key not in CSV_KEYS:
            raise DatasetError(
                f"source.csv_key={csv_key!r} is not one of {sorted(CSV_KEYS)} "
                "(what the key column of labels_csv holds)"
            )
        self.root = Path(root)
        self.labels_csv = Path(labels_csv) if labels_csv else None
        self.csv_key = csv_key
        self.csv_key_column = csv_key_column or CSV_KEYS[csv_key]
        self.label_column = label_column
        self.windows = resolve_windows(
            plain_config(window), None if multi_window is None else list(multi_window)
        )
        self.progress = progress

    # -- listing ---------------------------------------------------------------------------
    def load(self) -> list[Sample]:
        """Scan the tree and return one sample per image (per frame of multi-frame files)."""
        self.left_out: list[tuple[str, str]] = []  # (file, why): the run's skipped.csv
        images = self._scan()
        require_decoders(images)
        labels = self._labels(images)
        labelled = [img for img in images if img.path in labels]
        self.left_out += [(str(i.path), f"no label in {self.labels_csv}") for i in images
                          if i.path not in labels]  # fmt: skip
        if len(labelled) < len(images):
            log.warning(
                "dicom: %d image(s) under %s have no label in %s and are left out",
                len(images) - len(labelled),
                self.root,
                self.labels_csv,
            )
        if not labelled:
            raise DatasetError(f"no DICOM image under {self.root} has a label in {self.labels_csv}")
        warn_if_patient_ids_look_blanked(labelled)
        return dicom_samples(labelled, labels)

    def _scan(self) -> list[DicomImage]:
        root = self.root.expanduser()
        if not root.is_dir():
            raise DatasetError(
                f"data.root={str(self.root)!r} is not an existing folder (expected a DICOM tree)"
            )
        files = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ]
        if not files:
            raise DatasetError(
                f"data.root={str(self.root)!r} holds no files; expected DICOM files at any "
                "depth, e.g. <root>/<class>/<patient>/<series>/IM0001"
            )
        skipped: Counter[str] = Counter()
        example: dict[str, Path] = {}
        images: list[DicomImage] = []
        show = self.progress and len(files) >= 200
        for path in tqdm(files, desc="scanning DICOM", unit="file", disable=not show):
            try:
                ds = read_header(path)
            except DatasetError:
                reason = "unreadable DICOM"
            else:
                reason = _skip_reason(path, ds)
            if reason:
                skipped[reason] += 1
                example.setdefault(reason, path)
                self.left_out.append((str(path), reason))
                continue
            images.append(image_record(path, path.relative_to(root).as_posix(), ds))
        summary = ", ".join(
            f"{n} {reason} (e.g. {example[reason]})" for reason, n in skipped.items()
        )
        if not images:
            raise DatasetError(
                f"no readable DICOM image under {root}: scanned {len(files)} file(s); "
                f"skipped {summary}"
            )
        if skipped:
            log.info("dicom: %d image file(s) under %s; skipped %s", len(images), root, summary)
        return images

    # -- labels ----------------------------------------------------------------------------
    def _labels(self, images: list[DicomImage]) -> dict[Path, str]:
        if self.labels_csv is None:
            loose = [img.relative for img in images if "/" not in img.relative]
            if loose:
                raise DatasetError(
                    f"{len(loose)} DICOM file(s) lie directly in {self.root} (e.g. {loose[0]}); "
                    "labels come from the first folder below data.root (<root>/<class>/...), "
                    "so move them into class folders or give source.labels_csv"
                )
            return {img.path: img.relative.split("/", 1)[0] for img in images}
        table = read_label_table(self.labels_csv, self.csv_key_column, self.label_column)
        key_of = {
            "sop_instance_uid": lambda img: img.sop_uid,
            "path": lambda img: img.relative,
            "patient_id": lambda img: img.patient_id,
        }[self.csv_key]
        keys = {img.path: key_of(img) for img in images}
        check_all_keys_found(
            table, keys.values(), self.csv_key_column, self.labels_csv, str(self.root)
        )
        return {path: table[key] for path, key in keys.items() if key in table}


def plain_config(value: object) -> object:
    """Hydra passes DictConfig/ListConfig; windows want plain dicts and strings."""
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _skip_reason(path: Path, ds) -> str | None:
    if ds is None:
        return "not DICOM"
    if is_dicomdir(path, ds):
        return "DICOMDIR"
    if is_structured_report(ds):
        return "structured report (SR)"
    if "PixelData" not in ds:
        return "without pixel data"
    return None


def image_record(path: Path, relative: str, ds) -> DicomImage:
    """What a listing keeps of one file's header: ids, place in the scan, frames, syntax."""
    study = str(ds.get("StudyInstanceUID", "") or "")
    # anonymised exports sometimes blank PatientID; the study, then the folder, stand in
    patient = str(ds.get("PatientID", "") or "").strip() or study or str(Path(relative).parent)
    try:
        instance = int(ds.get("InstanceNumber")) if ds.get("InstanceNumber") is not None else None
    except (TypeError, ValueError):
        instance = None
    return DicomImage(
        path=path,
        relative=relative,
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        patient_id=patient,
        study_uid=study,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        position=slice_position(ds),
        instance=instance,
        frames=frame_count(ds),
        transfer_syntax=str(transfer_syntax(ds)),
    )


def dicom_samples(images: Sequence[DicomImage], labels: Mapping[Path, str]) -> list[Sample]:
    """One sample per image (per frame of a multi-frame file), in `slice_order`."""
    return [
        Sample(
            img.path,
            labels[img.path],
            img.patient_id,
            slice_index=frame,
            # one file per slice: its series and place along the normal order the scan
            series_id=(img.series_uid or None) if frame is None else None,
            slice_position=scan_position(img) if frame is None else None,
        )
        for img in sorted(images, key=slice_order)
        for frame in (range(img.frames) if img.frames > 1 else [None])
    ]


def scan_position(img: DicomImage) -> float | None:
    """Where the slice lies in its series: mm along the normal, else its InstanceNumber."""
    if img.position is not None:
        return img.position
    return None if img.instance is None else float(img.instance)


def slice_order(img: DicomImage) -> tuple:
    """Patients, then series, then slices along the scan axis (InstanceNumber if no geometry)."""
    by_position = img.position is not None
    return (
        img.patient_id,
        img.series_uid,
        0 if by_position else 1,
        img.position if by_position else 0.0,
        img.instance if img.instance is not None else 0,
        img.relative,
    )


def require_decoders(images: list[DicomImage]) -> None:
    """Fail before training when any file's compression has no decoder installed."""
    by_syntax: dict[str, list[Path]] = {}
    for img in images:
        by_syntax.setdefault(img.transfer_syntax, []).append(img.path)
    for uid, paths in by_syntax.items():
        require_decoder(UID(uid), f"{len(paths)} file(s), e.g. {paths[0]}")


def warn_if_patient_ids_look_blanked(images: list[DicomImage]) -> None:
    patients = {img.patient_id for img in images}
    studies = {img.study_uid for img in images if img.study_uid}
    if len(patients) == 1 and len(studies) > 1:
        log.warning(
            "dicom: all %d images share PatientID %r but come from %d studies; if "
            "anonymisation overwrote patient ids, every image lands in one split",
            len(images),
            next(iter(patients)),
            len(studies),
        )
