"""The series phantom (`stroke-synth layout=rsna`): RSNA's files, true DICOM, bleeds in place."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from stroke.cli.synth import main as synth_main
from stroke.data.dicom import DicomSource
from stroke.data.dicom_pixels import read_dicom_image, read_hu, slice_position
from stroke.data.samples import label_set_string
from stroke.data.windowing import WINDOW_PRESETS, window_hu
from stroke.errors import ConfigError
from stroke.synth import PhantomConfig, generate_phantom
from stroke.synth.series import (
    LABEL_COLUMNS,
    SeriesPhantomConfig,
    generate_series_phantom,
    render_patient,
)
from stroke.synth.subtypes import SUBTYPES
from tests.commands import run_main

SMALL = SeriesPhantomConfig(n_patients=6, image_size=48, seed=0, slices_per_series=(16, 20))
#: enough patients that every subtype turns up, rendered (not written) for the anatomy tests
COHORT = SeriesPhantomConfig(n_patients=60, image_size=64, seed=0)
UID = r"[0-9]+(?:\.[0-9]+)+"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The SMALL phantom, written once for the tests that only read it."""
    out = tmp_path_factory.mktemp("series")
    generate_series_phantom(out, SMALL, progress=False)
    return out


@pytest.fixture(scope="module")
def cohort() -> list:
    """COHORT's patients as the writer renders them."""
    return [render_patient(COHORT, i) for i in range(COHORT.n_patients)]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def headers(out: Path) -> dict[str, pydicom.Dataset]:
    """Every slice's data set, by SOPInstanceUID (pixels not loaded)."""
    files = sorted((out / "stage_2_train").iterdir())
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f, stop_before_pixels=True)
                                             for f in files)}  # fmt: skip


def grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow a boolean mask (or a stack of them) by `steps` pixels, 8-connected, in-plane."""
    for _ in range(steps):
        padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
        rows, cols = mask.shape[-2:]
        mask = np.any(
            [padded[..., i : i + rows, j : j + cols] for i in range(3) for j in range(3)], axis=0
        )
    return mask


def shrink(mask: np.ndarray) -> np.ndarray:
    """Erode a boolean mask by one pixel (8-connected)."""
    return ~grow(~mask, 1)


def test_files_csv_and_masks_agree_six_rows_an_image_any_the_maximum(small):
    files = sorted((small / "stage_2_train").iterdir())
    assert files and all(re.fullmatch(rf"ID_{UID}\.dcm", f.name) for f in files)
    rows = read_csv(small / "stage_2_train.csv")
    assert rows[0] == ["ID", "Label"]
    by_image: dict[str, dict[str, int]] = defaultdict(dict)
    order: dict[str, list[str]] = defaultdict(list)
    for key, value in rows[1:]:
        image, subtype = re.fullmatch(rf"(ID_{UID})_(\w+)", key).groups()
        assert value in ("0", "1") and subtype not in by_image[image]
        by_image[image][subtype] = int(value)
        order[image].append(subtype)
    assert sorted(by_image) == [f.stem for f in files]
    assert all(columns == list(LABEL_COLUMNS) for columns in order.values())
    assert len(rows) - 1 == 6 * len(files)
    labels = {uid: label for uid, label in read_csv(small / "labels.csv")[1:]}
    for image, values in by_image.items():
        assert values["any"] == max(values[s] for s in SUBTYPES)
        mask = np.asarray(Image.open(small / "masks" / f"{image}.png"))
        assert mask.dtype == np.uint8 and mask.shape == (SMALL.image_size, SMALL.image_size)
        assert set(np.unique(mask)) <= set(range(len(SUBTYPES) + 1))
        # a subtype is positive exactly where its mask value shows up
        assert {s for s in SUBTYPES if values[s]} == {SUBTYPES[v - 1] for v in np.unique(mask) if v}
        assert labels[image.removeprefix("ID_")] == label_set_string(
            s for s in SUBTYPES if values[s]
        )
    assert any(v["any"] for v in by_image.values()) and not all(v["any"] for v in by_image.values())


def test_slices_carry_the_dicom_a_ct_reader_expects(small):
    ds = pydicom.dcmread(next((small / "stage_2_train").iterdir()))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == CTImageStorage and ds.Modality == "CT"
    assert f"ID_{ds.SOPInstanceUID}.dcm" == Path(ds.filename).name
    assert re.fullmatch(r"PHANTOM-\d{4}", ds.PatientID) and str(ds.PatientName) == "ANONYMOUS"
    assert (ds.Rows, ds.Columns) == (SMALL.image_size, SMALL.image_size)
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 1)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 80.0)
    assert list(map(float, ds.ImageOrientationPatient)) == [1, 0, 0, 0, 1, 0]
    assert float(ds.PixelSpacing[0]) * SMALL.image_size == pytest.approx(240.0)
    assert ds.pixel_array.dtype == np.int16 and float(ds.SliceThickness) > 0


def test_a_series_is_one_patient_ordered_by_position_with_shared_uids(small):
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in headers(small).values():
        series[ds.SeriesInstanceUID].append(ds)
    assert len(series) == SMALL.n_patients
    low, high = SMALL.slices_per_series
    for slices in series.values():
        slices.sort(key=lambda ds: int(ds.InstanceNumber))
        assert low <= len(slices) <= high
        for key in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID"):
            assert len({ds.get(key) for ds in slices}) == 1, key
        positions = np.array([slice_position(ds) for ds in slices])
        steps = np.diff(positions)
        assert (steps > 0).all(), "InstanceNumber does not follow ImagePositionPatient"
        assert steps == pytest.approx(np.full_like(steps, float(slices[0].SliceThickness)))
    assert len({s[0].PatientID for s in series.values()}) == SMALL.n_patients
    assert len({s[0].StudyInstanceUID for s in series.values()}) == SMALL.n_patients


def test_uids_are_unique_and_fixed_by_the_settings(small, tmp_path):
    first = headers(small)
    uids = [ds.get(k) for ds in first.values() for k in ("SOPInstanceUID", "SeriesInstanceUID")]
    assert len(set(uids)) == len(first) + SMALL.n_patients
    again = tmp_path / "again"
    generate_series_phantom(again, SMALL, progress=False)
    for path in sorted(small.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(small)).read_bytes() == path.read_bytes(), path
    other = headers(generate_series_phantom(tmp_path / "other", replace(SMALL, seed=1),
                                            progress=False).parent)  # fmt: skip
    assert not set(other) & set(first)
    # one more patient leaves the others' files (names and pixels) as they were
    more = generate_series_phantom(tmp_path / "more", replace(SMALL, n_patients=7), progress=False)
    assert set(first) < set(headers(more.parent))


def test_hu_come_back_through_the_projects_dicom_reader(small):
    by_uid = headers(small)
    for index in (0, SMALL.n_patients - 1):
        series = render_patient(SMALL, index)
        mine = [ds for ds in by_uid.values() if ds.PatientID == series.patient_id]
        for ds in mine:
            k = int(ds.InstanceNumber) - 1
            path = small / "stage_2_train" / f"ID_{ds.SOPInstanceUID}.dcm"
            hu, _ = read_hu(path)
            np.testing.assert_array_equal(hu, series.hu[k])
            brain = read_dicom_image(path, [WINDOW_PRESETS["brain"]], in_chans=1)[:, :, 0]
            np.testing.assert_array_equal(brain, window_hu(series.hu[k].astype(np.float32), 80, 40))
        assert len(mine) == series.hu.shape[0]
    hu = series.hu.astype(float)
    assert hu.min() < -900 and hu.max() > 800  # air and bone, not clipped by the storage


def test_dicom_source_reads_the_series_in_order_with_their_label_sets(small):
    source = DicomSource(small / "stage_2_train", labels_csv=small / "labels.csv", progress=False)
    samples = source.load()
    by_uid = headers(small)
    assert len(samples) == len(by_uid)
    labels = {f"ID_{uid}": label for uid, label in read_csv(small / "labels.csv")[1:]}
    for sample in samples:
        ds = by_uid[sample.path.stem.removeprefix("ID_")]
        assert sample.label == labels[sample.path.stem] and sample.patient_id == ds.PatientID
        assert sample.series_id == ds.SeriesInstanceUID
    for series_id in {s.series_id for s in samples}:
        positions = [s.slice_position for s in samples if s.series_id == series_id]
        assert positions == sorted(positions)
    assert source.read(samples[0], in_chans=1).shape == (SMALL.image_size, SMALL.image_size, 1)


def test_each_subtype_lies_where_that_blood_collects(cohort):
    found = set()
    for series in cohort:
        # brain pixels next to the skull: the inner table's edge
        inner_table = series.brain & grow(~series.brain, 1)
        near_skull = grow(~series.brain, 2)
        for name, (first, last) in series.runs.items():
            found.add(name)
            mask = series.masks[first : last + 1] == SUBTYPES.index(name) + 1
            brain = series.brain[first : last + 1]
            assert (mask <= brain).all(), f"{series.patient_id}: {name} outside the brain"
            if name in ("epidural", "subdural"):
                touches = (mask & inner_table[first : last + 1]).any(axis=(1, 2))
                assert touches.all(), f"{series.patient_id}: {name} off the inner table"
            elif name == "intraventricular":
                assert (mask <= series.ventricles[first : last + 1]).all(), series.patient_id
            elif name == "intraparenchymal":
                assert not (mask & near_skull[first : last + 1]).any(), series.patient_id
                assert not (mask & series.ventricles[first : last + 1]).any(), series.patient_id
            else:
                assert not (mask & series.ventricles[first : last + 1]).any(), series.patient_id
    assert found == set(SUBTYPES), f"no {set(SUBTYPES) - found} in {COHORT.n_patients} patients"


def test_shapes_differ_lens_and_crescent_thick_and_thin(cohort):
    thickness = defaultdict(list)  # pixels that survive one erosion, per pixel of blood
    for series in cohort:
        for name in series.runs:
            mask = series.masks == SUBTYPES.index(name) + 1
            thickness[name].append(shrink(mask).sum() / mask.sum())
    assert max(thickness["subarachnoid"]) < 0.1, "subarachnoid blood is not a thin line"
    # at 64 px a crescent is a line or two of pixels; a lens has a core
    assert np.mean(thickness["epidural"]) > max(0.05, 2 * np.mean(thickness["subdural"]))
    # the lens is short: it meets less of the inner table than the crescent does
    contact = defaultdict(list)
    for series in cohort:
        inner_table = series.brain & grow(~series.brain, 1)
        for name in ("epidural", "subdural"):
            if name in series.runs:
                a, b = series.runs[name]
                middle = (a + b) // 2
                blood = series.masks[middle] == SUBTYPES.index(name) + 1
                contact[name].append((blood & inner_table[middle]).sum())
    assert 0 < np.mean(contact["epidural"]) < np.mean(contact["subdural"]) / 1.5


def test_blood_is_denser_than_brain_and_shrinks_towards_a_runs_ends(cohort):
    ends, largest = [], []  # subarachnoid areas, which follow the sulci a slice happens to cut
    for series in cohort:
        for name, (first, last) in series.runs.items():
            value = SUBTYPES.index(name) + 1
            area = [(series.masks[k] == value).sum() for k in range(first, last + 1)]
            assert min(area) > 0, f"{series.patient_id}: a hole in the {name} run"
            assert 3 <= len(area) <= 10
            if name == "subarachnoid":
                ends += [area[0], area[-1]]
                largest += [max(area)] * 2
            else:
                assert area[0] < max(area) > area[-1], (series.patient_id, name, area)
            middle = first + int(np.argmax(area))
            blood = series.hu[middle][series.masks[middle] == value].mean()
            tissue = series.hu[middle][series.brain[middle] & (series.masks[middle] == 0)]
            # blood mixed with CSF (thin layers in the sulci, a ventricle's edge) is fainter
            excess = 8 if name in ("subarachnoid", "intraventricular") else 15
            assert blood > np.median(tissue) + excess, (series.patient_id, name)
        in_a_run = np.zeros(series.masks.shape[0], dtype=bool)
        for first, last in series.runs.values():
            in_a_run[first : last + 1] = True
        assert not series.masks[~in_a_run].any() and in_a_run.sum() < len(in_a_run)
    assert np.mean(ends) < 0.6 * np.mean(largest)


def test_some_patients_have_no_bleed_and_some_several(cohort, small):
    counts = [len(series.runs) for series in cohort]
    assert 0.25 < counts.count(0) / len(counts) < 0.6
    assert max(counts) >= 3 and sum(c >= 2 for c in counts) >= 5
    record = json.loads((small / "phantom.json").read_text())
    assert record["settings"]["layout"] == "rsna"
    assert record["settings"]["slices_per_series"] == list(SMALL.slices_per_series)
    for truth in record["patients"]:
        series = render_patient(SMALL, int(truth["patient_id"].split("-")[1]))
        assert truth["runs"] == {name: list(run) for name, run in series.runs.items()}
        assert truth["subtypes"] == sorted(series.runs) and truth["slices"] == len(series.hu)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"image_size": 16}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"slices_per_series": (3, 8)}, r"slices_per_series\[0\]"),
        ({"slices_per_series": (20, 16)}, r"slices_per_series\[1\]"),
        ({"slices_per_series": 20}, "slices_per_series"),
        ({"slices_per_series": (16, 20, 24)}, "slices_per_series"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as error:
        SeriesPhantomConfig(**overrides)
    assert "\n" not in str(error.value)


def test_reuse_overwrite_and_user_files_as_for_the_png_phantom(tmp_path):
    tiny = SeriesPhantomConfig(n_patients=2, image_size=32, slices_per_series=(8, 8))
    csv_path = generate_series_phantom(tmp_path, tiny, progress=False)
    stamp = csv_path.stat().st_mtime_ns
    assert generate_series_phantom(tmp_path, tiny, progress=False) == csv_path
    assert csv_path.stat().st_mtime_ns == stamp
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_series_phantom(tmp_path, replace(tiny, seed=1), progress=False)
    generate_series_phantom(tmp_path, replace(tiny, n_patients=1), overwrite=True, progress=False)
    assert notes.read_text() == "mine"
    assert len(list((tmp_path / "stage_2_train").iterdir())) == 8  # the second patient is gone
    assert len(list((tmp_path / "masks").iterdir())) == 8

    # a write cut short (no phantom.json) is started again without overwrite
    (tmp_path / "phantom.json").unlink()
    notes.unlink()
    generate_series_phantom(tmp_path, tiny, progress=False)
    assert len(list((tmp_path / "stage_2_train").iterdir())) == 16


def test_stroke_synth_layout_rsna_writes_it_and_names_bad_keys(tmp_path, capsys):
    out = tmp_path / "rsna"
    args = ["layout=rsna", "n_patients=2", "image_size=32", f"out_dir={out}"]
    code, stdout, _ = run_main(synth_main, *args, capsys=capsys)
    assert code == 0 and "stage_2_train.csv" in stdout
    assert json.loads((out / "phantom.json").read_text())["settings"]["image_size"] == 32
    code, _, stderr = run_main(synth_main, *args, "seed=3", capsys=capsys)
    assert code == 2 and "overwrite=true" in stderr and stderr.count("\n") <= 2
    code, _, stderr = run_main(synth_main, "layout=nifti", capsys=capsys)
    assert code == 2 and "layout='nifti'" in stderr


def test_the_default_png_phantom_is_unchanged(tmp_path):
    """Pixels and files of a tiny default phantom, pinned: the data every other test uses.

    Changing the PNG phantom's rendering is a decision: bump phantom._GENERATOR_VERSION
    and this hash together.
    """
    config = PhantomConfig(n_patients=3, slices_per_patient=2, image_size=32, seed=0)
    generate_phantom(tmp_path, config, progress=False)
    digest = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(tmp_path).as_posix().encode())
            pixels = np.asarray(Image.open(path)).tobytes() if path.suffix == ".png" else None
            digest.update(pixels if pixels is not None else path.read_bytes())
    assert digest.hexdigest() == "bacd94666d5249bab8932e59367364e9663b9896c6c33723454332d24147fbb0"
