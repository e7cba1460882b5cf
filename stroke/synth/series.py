"""The phantom as RSNA-style DICOM series with haemorrhage subtypes (`stroke-synth layout=rsna`).

Each patient is one axial CT series of 16-32 slices from the skull base to near the vertex,
drawn on the same heads as the PNG phantom (`phantom.py`) and stored in HU as RSNA's files
are: int16, RescaleSlope 1, RescaleIntercept -1024. The folder follows RSNA's layout:

    <out_dir>/stage_2_train/ID_<SOPInstanceUID>.dcm   one file per slice, flat
    <out_dir>/stage_2_train.csv                       ID,Label: six rows per image,
                                                      ID_<SOPInstanceUID>_<subtype>,<0|1>
    <out_dir>/masks/ID_<SOPInstanceUID>.png           uint8 subtype mask (1..5, SUBTYPES)
    <out_dir>/labels.csv                              SOPInstanceUID,label (the label set)
    <out_dir>/phantom.json                            settings and each patient's truth

A slice's labels are what its mask holds: a subtype is 1 when any pixel is of its value,
`any` is the maximum of the five.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from stroke.data.samples import label_set_string
from stroke.errors import ConfigError
from stroke.io import atomic_write_text, atomic_writer
from stroke.synth import phantom
from stroke.synth.anatomy import Head, acquire, render_anatomy
from stroke.synth.ct_dicom import CTSeries, content_uid, stored_hu
from stroke.synth.phantom import _require_int
from stroke.synth.reuse import reusable
from stroke.synth.subtypes import SUBTYPES, draw_patient_bleeds, paint_bleeds

__all__ = [
    "LABEL_COLUMNS",
    "PatientSeries",
    "SeriesPhantomConfig",
    "generate_series_phantom",
    "render_patient",
]

#: The label columns of each image in stage_2_train.csv, in RSNA's order.
LABEL_COLUMNS: tuple[str, ...] = (*SUBTYPES, "any")
# Bump when the rendering changes, so folders written by an older generator are not reused.
_GENERATOR_VERSION = 1
#: A random stream apart from the PNG phantom's, so the two layouts never share a head.
_STREAM = 1
_FIELD_OF_VIEW_MM = 240.0
_BRAIN_HALF_HEIGHT_MM = 75.0  # one unit of the phantom's z
_IMAGES, _CSV, _MASKS = "stage_2_train", "stage_2_train.csv", "masks"
_LABELS, _RECORD = "labels.csv", "phantom.json"
_DICOM_FILE = re.compile(r"^ID_[0-9.]+\.dcm$")
_MASK_FILE = re.compile(r"^ID_[0-9.]+\.png$")


@dataclass(frozen=True)
class SeriesPhantomConfig:
    """Size and seed of a series phantom; the seed alone fixes every pixel and every UID."""

    n_patients: int = 60
    image_size: int = 64
    seed: int = 0
    slices_per_series: tuple[int, int] = (16, 32)  # the least and most slices of a series

    def __post_init__(self) -> None:
        _require_int("n_patients", self.n_patients, 1)
        _require_int("image_size", self.image_size, 32)
        _require_int("seed", self.seed, 0)
        bounds = self.slices_per_series
        # Hydra hands a ListConfig; a tuple keeps the config hashable and comparable.
        if isinstance(bounds, str) or not hasattr(bounds, "__len__") or len(bounds) != 2:
            raise ConfigError(
                f"slices_per_series={bounds!r} is invalid; allowed: [least, most], two integers."
            )
        object.__setattr__(self, "slices_per_series", tuple(bounds))
        least, most = self.slices_per_series
        _require_int("slices_per_series[0]", least, 4, "a run of bleeding needs room")
        _require_int("slices_per_series[1]", most, least, "slices_per_series[0]")


@dataclass
class PatientSeries:
    """One patient's series as the files hold it, slices from inferior to superior.

    `hu` is what the DICOM files decode to; `masks` the subtype masks; `brain` (inside the
    inner skull table) and `ventricles` are the anatomy the bleeds were drawn against.
    `runs` gives each subtype its first and last slice index (InstanceNumber - 1).
    """

    index: int
    patient_id: str
    hu: np.ndarray  # (slices, rows, columns) int16
    masks: np.ndarray  # uint8, 0 or 1 + SUBTYPES.index(subtype)
    brain: np.ndarray
    ventricles: np.ndarray
    positions_mm: list[float]  # z of each slice (ImagePositionPatient[2])
    spacing_mm: float
    runs: dict[str, tuple[int, int]]

    def labels(self, slice_index: int) -> dict[str, int]:
        """The slice's 0/1 label for each of LABEL_COLUMNS."""
        present = set(np.unique(self.masks[slice_index]).tolist())
        values = {name: int(i + 1 in present) for i, name in enumerate(SUBTYPES)}
        return {**values, "any": max(values.values())}


def render_patient(config: SeriesPhantomConfig, index: int) -> PatientSeries:
    """Render patient `index` of the phantom; the same for any n_patients."""
    rng = np.random.default_rng([config.seed, index, _STREAM])
    head = Head(rng)
    n_slices = int(rng.integers(config.slices_per_series[0], config.slices_per_series[1] + 1))
    bottom, top = rng.uniform(-0.68, -0.55), rng.uniform(0.78, 0.88)
    spacing = round((top - bottom) * _BRAIN_HALF_HEIGHT_MM / (n_slices - 1), 3)
    table = round(float(rng.uniform(-40.0, 40.0)), 1)  # where the head lies on the couch
    positions = [round(table + bottom * _BRAIN_HALF_HEIGHT_MM + k * spacing, 3) for k in
                 range(n_slices)]  # fmt: skip
    size = config.image_size
    axis = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    anatomies = [render_anatomy(head, (z - table) / _BRAIN_HALF_HEIGHT_MM, axis) for z in positions]
    bleeds = draw_patient_bleeds(anatomies, rng)
    hu, masks = [], []
    for k, anatomy in enumerate(anatomies):
        masks.append(paint_bleeds(anatomy.hu, anatomy, k, bleeds))
        scanned = acquire(anatomy.hu, head, rng)
        hu.append(stored_hu(scanned))
    masks_array = np.stack(masks)
    runs = {}
    for value, name in enumerate(SUBTYPES, start=1):
        slices = np.flatnonzero((masks_array == value).any(axis=(1, 2)))
        if slices.size:
            runs[name] = (int(slices[0]), int(slices[-1]))
    return PatientSeries(
        index=index,
        patient_id=f"PHANTOM-{index:04d}",
        hu=np.stack(hu),
        masks=masks_array,
        brain=np.stack([a.brain for a in anatomies]),
        ventricles=np.stack([a.ventricles for a in anatomies]),
        positions_mm=positions,
        spacing_mm=spacing,
        runs=runs,
    )


def _settings(config: SeriesPhantomConfig) -> dict[str, object]:
    """What decides the files' content: the config, the layout and the generator version."""
    return {
        "layout": "rsna",
        **asdict(config),
        "slices_per_series": list(config.slices_per_series),
        "generator_version": _GENERATOR_VERSION,
    }


def _uid_settings(config: SeriesPhantomConfig) -> dict[str, object]:
    """The settings a UID is fixed by: a patient's pixels do not depend on how many there are."""
    settings = _settings(config)
    del settings["n_patients"]
    return settings


def _write_patient(
    out_dir: Path, config: SeriesPhantomConfig, series: PatientSeries
) -> tuple[list[list[str]], list[list[str]], dict[str, object]]:
    """Write one patient's slices and masks; returns its CSV rows, label rows and truth."""
    settings = _uid_settings(config)
    uids = CTSeries.uids(settings, series.index)
    pixel_mm = round(_FIELD_OF_VIEW_MM / config.image_size, 4)
    corner = round(-_FIELD_OF_VIEW_MM / 2 + pixel_mm / 2, 4)
    ct = CTSeries.from_uids(
        uids,
        patient_id=series.patient_id,
        pixel_spacing_mm=(pixel_mm, pixel_mm),
        slice_thickness_mm=series.spacing_mm,
    )
    rows, label_rows = [], []
    for k in range(series.hu.shape[0]):
        sop_uid = content_uid(settings, series.index, "SOPInstanceUID", k)
        name = f"ID_{sop_uid}"
        position = [corner, corner, series.positions_mm[k]]
        ct.write_slice(out_dir / _IMAGES / f"{name}.dcm", series.hu[k], k + 1, position, sop_uid)
        Image.fromarray(series.masks[k]).save(out_dir / _MASKS / f"{name}.png", format="PNG")
        labels = series.labels(k)
        rows += [[f"{name}_{column}", str(labels[column])] for column in LABEL_COLUMNS]
        positives = [s for s in SUBTYPES if labels[s]]
        label_rows.append([sop_uid, label_set_string(positives)])
    truth = {
        "patient_id": series.patient_id,
        **uids,
        "slices": int(series.hu.shape[0]),
        "slice_spacing_mm": series.spacing_mm,
        "subtypes": sorted(series.runs),
        # first and last slice index (InstanceNumber - 1, inferior to superior) per subtype
        "runs": {name: list(run) for name, run in sorted(series.runs.items())},
    }
    return rows, label_rows, truth


def _owned(out_dir: Path) -> list[Path]:
    """The files under out_dir this generator writes."""
    files = [out_dir / name for name in (_CSV, _LABELS, _RECORD)]
    for folder, pattern in ((_IMAGES, _DICOM_FILE), (_MASKS, _MASK_FILE)):
        if (out_dir / folder).is_dir():
            files += [p for p in (out_dir / folder).iterdir() if pattern.match(p.name)]
    return [p for p in files if p.is_file()]


def _only_generated(out_dir: Path) -> bool:
    """Whether every file under out_dir is one this generator writes."""
    owned = set(_owned(out_dir)) | {out_dir / _IMAGES, out_dir / _MASKS}
    return all(path in owned for path in out_dir.rglob("*"))


def _remove_generated(out_dir: Path) -> None:
    """Delete only the files stroke-synth writes (either layout's), sparing anything else."""
    for path in _owned(out_dir):
        path.unlink()
    phantom._remove_generated(out_dir)  # a PNG phantom written to the same folder before
    for folder in (_IMAGES, _MASKS):
        if (out_dir / folder).is_dir() and not any((out_dir / folder).iterdir()):
            (out_dir / folder).rmdir()


def generate_series_phantom(
    out_dir: str | Path,
    config: SeriesPhantomConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the series phantom to out_dir and return the path to its stage_2_train.csv.

    An existing folder written with the same settings is reused as is. Any other non-empty
    folder raises FileExistsError unless overwrite=True, which deletes only the files
    stroke-synth owns (this layout's and the PNG phantom's), never anything else.
    """
    config = config or SeriesPhantomConfig()
    out_dir = Path(out_dir)
    if reusable(
        out_dir, config, _settings(config), _CSV, _only_generated, _remove_generated, overwrite
    ):
        return out_dir / _CSV
    (out_dir / _IMAGES).mkdir(parents=True, exist_ok=True)
    (out_dir / _MASKS).mkdir(parents=True, exist_ok=True)
    rows, label_rows, patients = [], [], []
    bar = tqdm(range(config.n_patients), desc="phantom", unit="patient", disable=not progress)
    for index in bar:
        patient_rows, patient_labels, truth = _write_patient(
            out_dir, config, render_patient(config, index)
        )
        rows += patient_rows
        label_rows += patient_labels
        patients.append(truth)
    # RSNA's CSV is in no slice order either (images by ID, each image's six rows together):
    # readers must order slices by their position
    rows.sort(key=lambda row: row[0].rsplit("_", 1)[0])
    _write_csv(out_dir / _CSV, ["ID", "Label"], rows)
    _write_csv(out_dir / _LABELS, ["SOPInstanceUID", "label"], sorted(label_rows))
    record = {"settings": _settings(config), "patients": patients}
    # Written last: its presence marks a complete dataset that later calls may reuse.
    atomic_write_text(out_dir / _RECORD, json.dumps(record, indent=2) + "\n")
    return out_dir / _CSV


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV atomically, with Unix line ends."""
    with atomic_writer(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
