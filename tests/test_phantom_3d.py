"""The volume phantom (`stroke-synth layout=volumes`): scans, label volumes, DICOM, cases.csv."""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage

from stroke.cli.synth import main as synth_main
from stroke.data.samples import label_set_string
from stroke.errors import ConfigError
from stroke.synth import VolumePhantomConfig, generate_volume_phantom
from stroke.synth.volume_files import CASE_COLUMNS
from stroke.synth.volume_lesions import LESION_CLASSES, Hemorrhage, Infarct
from stroke.synth.volumes import render_patient
from tests.commands import run_main
from tests.conftest import compose_config, run_module

#: In-plane spacing planned a little anisotropic, so rows and columns cannot be swapped
#: unnoticed; two of the six patients have a follow-up.
SMALL = VolumePhantomConfig(
    n_patients=6, image_size=32, slices=12, spacing=(3.0, 3.3, 5.0), followup_fraction=0.34
)
#: enough patients for every mix of lesions, rendered (not written) for the anatomy tests
COHORT = VolumePhantomConfig(n_patients=30, image_size=32, slices=12, followup_fraction=0.2)
CASE = re.compile(r"p\d{4}_s\d")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The SMALL phantom, written once for the tests that only read it."""
    out = tmp_path_factory.mktemp("volumes")
    generate_volume_phantom(out, SMALL, progress=False)
    return out


@pytest.fixture(scope="module")
def rows(small) -> list[dict[str, str]]:
    with (small / "cases.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cohort() -> list:
    """COHORT's scans as the writer renders them."""
    return [case for i in range(COHORT.n_patients) for case in render_patient(COHORT, i)]


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The centroid of a voxel mask in world (RAS) millimetres."""
    return (affine @ np.append(np.argwhere(mask).mean(axis=0), 1.0))[:3]


def to_ras(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The image reoriented to RAS+ voxel axes (nibabel's canonical orientation)."""
    return nib.as_closest_canonical(image)


def test_files_csv_and_shapes_agree(small, rows):
    assert list(rows[0]) == list(CASE_COLUMNS)
    names = [row["case"] for row in rows]
    assert names == SMALL.case_names() and all(CASE.fullmatch(n) for n in names)
    assert sum(n.endswith("_s1") for n in names) == 2 and len(names) == 8
    assert sorted(p.name for p in (small / "images").iterdir()) == [f"{n}.nii.gz" for n in names]
    for row in rows:
        assert row["patient_id"] == row["case"].split("_")[0]
        image, labels = nib.load(small / row["path"]), nib.load(small / row["label_path"])
        assert image.shape == labels.shape == (32, 32, 12)
        assert image.get_data_dtype() == np.int16 and labels.get_data_dtype() == np.uint8
        # HU as stored: no scaling, so the int16 on disk is what a reader gets
        assert np.asanyarray(image.dataobj).dtype == np.int16
        assert image.dataobj.slope == 1.0 and image.dataobj.inter == 0.0
        np.testing.assert_array_equal(image.affine, labels.affine)
        np.testing.assert_allclose(image.affine, image.get_qform(), atol=1e-5)
        assert np.linalg.det(image.affine[:3, :3]) > 0  # proper: no mirror image
        assert "".join(nib.aff2axcodes(image.affine)) == row["orientation"]
        spacing = [float(row[f"spacing_{axis}"]) for axis in "xyz"]
        np.testing.assert_allclose(image.header.get_zooms(), spacing, atol=1e-5)
        assert 0.93 * 3.0 <= spacing[0] <= 1.07 * 3.0 and 4.5 <= spacing[2] <= 5.5
        assert spacing[1] / spacing[0] == pytest.approx(1.1, abs=1e-3)  # square in plan
        hu = np.asanyarray(image.dataobj)
        assert hu.min() < -900 and hu.max() > 800  # air and bone
        # the head is centred on the world's origin
        head = to_ras(image).get_fdata() > -200
        assert np.abs(world_centroid(head, to_ras(image).affine)[:2]).max() < 15
    assert len({row["spacing_z"] for row in rows}) > 1, "every scan has the same spacing"
    orientations = [row["orientation"] for row in rows]
    assert orientations.count("LPS") == round(len(rows) * SMALL.lps_fraction)
    assert set(orientations) == {"RAS", "LPS"}


def test_labels_are_the_classes_inside_the_brain_and_the_csv_volumes_theirs(small, rows):
    cases = {c.name: c for i in range(SMALL.n_patients) for c in render_patient(SMALL, i)}
    for row in rows:
        labels_image = nib.load(small / row["label_path"])
        labels = np.asanyarray(labels_image.dataobj)
        assert set(np.unique(labels)) <= {0, 1, 2}
        case = cases[row["case"]]
        np.testing.assert_array_equal(labels, case.stored(case.labels))
        assert (case.brain[case.labels > 0]).all(), f"{case.name}: a lesion outside the brain"
        voxel_ml = math.prod(labels_image.header.get_zooms()) / 1000
        for value, name in enumerate(LESION_CLASSES, start=1):
            expected = int((labels == value).sum()) * voxel_ml
            assert float(row[f"{name}_ml"]) == pytest.approx(expected, abs=6e-4)
        present = [n for v, n in enumerate(LESION_CLASSES, start=1) if (labels == v).any()]
        assert row["lesions"] == label_set_string(present)
    assert any(float(row["hemorrhage_ml"]) > 0 for row in rows)


def test_some_scans_have_no_lesion_some_one_class_some_both(cohort):
    mixes = {tuple(case.classes) for case in cohort}
    assert mixes == {(), ("hemorrhage",), ("infarct",), ("hemorrhage", "infarct")}
    for case in cohort:
        drawn = {LESION_CLASSES[lesion.label - 1] for lesion in case.lesions}
        assert set(case.classes) == drawn, case.name  # no lesion drawn too small to see


def test_lesions_are_dense_or_dark_against_the_brain_around_them(cohort):
    for case in cohort:
        hu = case.hu.astype(float)
        brain = hu[case.brain & (case.labels == 0) & (hu > 15) & (hu < 60)]
        assert 25 <= np.median(brain) <= 42, case.name
        for value, name in enumerate(LESION_CLASSES, start=1):
            lesion = hu[case.labels == value]
            if not lesion.size:
                continue
            # medians: the scanner's blur mixes a lesion's rim with what lies beside it
            if name == "hemorrhage":
                assert 52 <= np.median(lesion) <= 82, case.name
                assert np.median(lesion) > np.median(brain) + 20, case.name
            else:
                assert 12 <= np.median(lesion) <= 21, case.name
                assert np.median(lesion) < np.median(brain) - 5, case.name
    hemorrhage_ml = [case.volume_ml(1) for case in cohort if case.volume_ml(1)]
    assert 0.5 < np.median(hemorrhage_ml) < 30  # a few mL


def test_lps_scans_hold_the_same_world_anatomy_as_ras(small, rows, tmp_path):
    lps = [row for row in rows if row["orientation"] == "LPS"]
    assert lps
    for row in lps:
        stored = nib.load(small / row["path"])
        assert nib.aff2axcodes(stored.affine) == ("L", "P", "S")
        case = next(c for c in render_patient(SMALL, int(row["patient_id"][1:]) - 1)
                    if c.name == row["case"])  # fmt: skip
        # the same scan stored RAS instead
        ras = replace(case, orientation="RAS")
        np.testing.assert_allclose(ras.affine, np.diag([-1, -1, 1, 1]) @ stored.affine, atol=1e-4)
        canonical = to_ras(stored)
        np.testing.assert_allclose(canonical.affine, ras.affine, atol=1e-4)
        np.testing.assert_array_equal(canonical.get_fdata(), ras.stored(case.hu))
        # the lesion lies at the same millimetres, and a voxel's centre in mm reads the same
        # HU through either file's own affine
        labels = np.asanyarray(nib.load(small / row["label_path"]).dataobj)
        if labels.any():
            centre = world_centroid(labels > 0, stored.affine)
            np.testing.assert_allclose(centre, world_centroid(ras.stored(case.labels) > 0,
                                                              ras.affine), atol=1e-3)  # fmt: skip
        hu = np.asanyarray(stored.dataobj)
        for voxel in ([16, 16, 6], [3, 25, 2], [20, 9, 10]):
            point = stored.affine @ [*voxel, 1]
            there = np.rint(np.linalg.solve(ras.affine, point)[:3]).astype(int)
            assert hu[tuple(voxel)] == ras.stored(case.hu)[tuple(there)]
            assert tuple(there) == (31 - voxel[0], 31 - voxel[1], voxel[2])


def test_left_is_left_and_front_is_front_in_world_space(cohort):
    """A lesion drawn on the patient's left lies at RAS x < 0, an anterior one at y > 0."""
    checked = 0
    for case in cohort:
        for lesion in case.lesions:
            mask = case.stored(case.labels) == lesion.label
            if not mask.any():
                continue
            x, y, _ = world_centroid(mask, case.affine)
            if isinstance(lesion, Hemorrhage):
                u, v, _ = lesion.centre  # the head's frame: u to the left, v to the back
                if abs(u) > 0.25:
                    assert np.sign(x) == -np.sign(u), case.name
                    checked += 1
                if abs(v) > 0.25:
                    assert np.sign(y) == -np.sign(v), case.name
                    checked += 1
            elif isinstance(lesion, Infarct) and not lesion.midline_side:  # a lateral MCA wedge
                assert np.sign(x) == -np.sign(math.cos(lesion.direction)), case.name
                checked += 1
    assert checked >= 10


def test_a_dicom_series_reads_back_as_its_nifti_through_monai(small, rows):
    from monai.transforms import LoadImage, Orientation

    with warnings.catch_warnings():  # MONAI's note that no GPU decoder is installed
        warnings.filterwarnings("ignore", message=".*nvImageCodec", category=UserWarning)
        load = LoadImage(image_only=True, ensure_channel_first=True)
        # the axis labels spelled out: MONAI warns that their default is to change
        orient = Orientation("RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
        for row in rows:
            from_nifti = orient(load(str(small / row["path"])))
            from_dicom = orient(load(str(small / row["dicom_dir"])))
            assert from_dicom.shape == from_nifti.shape == (1, 32, 32, 12)
            np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-3)
            difference = (from_dicom.numpy().astype(float) - from_nifti.numpy()).max()
            assert abs(difference) <= 0.5, row["case"]


def test_dicom_series_carry_the_geometry_and_ids_of_their_case(small, rows):
    studies = set()
    for row in rows:
        files = sorted((small / row["dicom_dir"]).iterdir())
        slices = [pydicom.dcmread(f) for f in files]
        assert len(slices) == 12 and [int(ds.InstanceNumber) for ds in slices] == list(range(1, 13))
        first = slices[0]
        assert first.SOPClassUID == CTImageStorage and first.Modality == "CT"
        assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
        assert list(map(float, first.ImageOrientationPatient)) == [1, 0, 0, 0, 1, 0]
        sx, sy, sz = (float(row[f"spacing_{axis}"]) for axis in "xyz")
        assert list(map(float, first.PixelSpacing)) == [sy, sx]  # rows' step first
        assert float(first.SliceThickness) == sz
        positions = np.array([list(map(float, ds.ImagePositionPatient)) for ds in slices])
        np.testing.assert_allclose(np.diff(positions[:, 2]), sz, atol=1e-3)
        # LPS patient space, the grid centred on 0 as the NIfTI's
        np.testing.assert_allclose(positions[0, :2], [-15.5 * sx, -15.5 * sy], atol=1e-3)
        np.testing.assert_allclose(positions[:, 2].mean(), 0.0, atol=1e-3)
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "PatientID"):
            assert len({ds.get(key) for ds in slices}) == 1, key
        assert first.PatientID == row["patient_id"]
        studies.add(first.StudyInstanceUID)
        lps = nib.load(small / row["path"])
        hu = np.asanyarray(to_ras(lps).dataobj)[::-1, ::-1, :]  # RAS voxels to LPS voxels
        np.testing.assert_array_equal(slices[5].pixel_array + -1024, hu[:, :, 5].T)
    assert len(studies) == len(rows)


def test_follow_ups_are_the_same_patient_with_the_lesion_a_little_changed(small, rows):
    by_case = {row["case"]: row for row in rows}
    followups = [name for name in by_case if name.endswith("_s1")]
    assert len(followups) == round(SMALL.n_patients * SMALL.followup_fraction)
    for name in followups:
        first, second = by_case[name.replace("_s1", "_s0")], by_case[name]
        assert first["patient_id"] == second["patient_id"]
        assert first["lesions"] == second["lesions"]
        for column in ("hemorrhage_ml", "infarct_ml"):
            a, b = float(first[column]), float(second[column])
            assert (a == b == 0) or (a != b and 0.3 < b / a < 3), (name, column, a, b)
        a = pydicom.dcmread(next((small / first["dicom_dir"]).iterdir()))
        b = pydicom.dcmread(next((small / second["dicom_dir"]).iterdir()))
        assert a.PatientID == b.PatientID and a.StudyInstanceUID != b.StudyInstanceUID


def test_the_seed_fixes_every_byte_and_more_patients_leave_the_others_alone(small, tmp_path):
    again = generate_volume_phantom(tmp_path / "again", SMALL, progress=False).parent
    files = sorted(p for p in small.rglob("*") if p.is_file())
    for path in files:
        assert (again / path.relative_to(small)).read_bytes() == path.read_bytes(), path
    more = generate_volume_phantom(
        tmp_path / "more", replace(SMALL, n_patients=7), progress=False
    ).parent
    for path in files:
        if path.suffix != ".csv" and path.name != "phantom.json":
            assert (more / path.relative_to(small)).read_bytes() == path.read_bytes(), path
    other = generate_volume_phantom(tmp_path / "other", replace(SMALL, seed=1), progress=False)
    first = next(p for p in files if p.name.endswith(".nii.gz"))
    assert (other.parent / first.relative_to(small)).read_bytes() != first.read_bytes()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"image_size": 16}, "image_size"),
        ({"slices": 4}, "slices"),
        ({"seed": -1}, "seed"),
        ({"spacing": (3.0, 3.0)}, "spacing"),
        ({"spacing": (3.0, 3.0, 0.0)}, "spacing"),
        ({"spacing": "3"}, "spacing"),
        ({"followup_fraction": 1.5}, "followup_fraction"),
        ({"lps_fraction": -0.1}, "lps_fraction"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as error:
        VolumePhantomConfig(**overrides)
    assert "\n" not in str(error.value)


def test_the_command_defaults_are_the_config_class_defaults():
    cfg = compose_config("synth", ["layout=volumes"])
    default = VolumePhantomConfig()
    assert cfg.slices == default.slices and tuple(cfg.spacing) == default.spacing
    assert cfg.followup_fraction == default.followup_fraction
    assert cfg.lps_fraction == default.lps_fraction and cfg.seed == default.seed
    assert len(default.case_names()) == 40


def test_reuse_overwrite_and_user_files_as_for_the_other_layouts(tmp_path):
    tiny = VolumePhantomConfig(n_patients=2, image_size=32, slices=8, followup_fraction=0)
    csv_path = generate_volume_phantom(tmp_path, tiny, progress=False)
    stamp = csv_path.stat().st_mtime_ns
    assert generate_volume_phantom(tmp_path, tiny, progress=False) == csv_path
    assert csv_path.stat().st_mtime_ns == stamp
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_volume_phantom(tmp_path, replace(tiny, seed=1), progress=False)
    generate_volume_phantom(tmp_path, replace(tiny, n_patients=1), overwrite=True, progress=False)
    assert notes.read_text() == "mine"
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["p0001_s0.nii.gz"]
    assert [p.name for p in (tmp_path / "dicom").iterdir()] == ["p0001_s0"]
    # a write cut short (no phantom.json) is started again without overwrite
    (tmp_path / "phantom.json").unlink()
    notes.unlink()
    generate_volume_phantom(tmp_path, tiny, progress=False)
    assert len(list((tmp_path / "labels").iterdir())) == 2
    assert json.loads((tmp_path / "phantom.json").read_text())["settings"]["layout"] == "volumes"


def test_stroke_synth_layout_volumes_writes_reuses_and_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "volumes"
    args = ["layout=volumes", f"out_dir={out}", "n_patients=2", "image_size=32", "slices=8"]
    result = run_module("stroke.cli.synth", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cases.csv" in result.stdout
    settings = json.loads((out / "phantom.json").read_text())["settings"]
    assert (settings["n_patients"], settings["slices"]) == (2, 8)
    stamp = (out / "cases.csv").stat().st_mtime_ns
    code, stdout, _ = run_main(synth_main, *args, capsys=capsys)
    assert code == 0 and (out / "cases.csv").stat().st_mtime_ns == stamp
    code, _, stderr = run_main(synth_main, *args, "seed=3", capsys=capsys)
    assert code == 2 and "overwrite=true" in stderr
    assert "Traceback" not in stderr and stderr.strip().count("\n") == 0
    code, _, stderr = run_main(synth_main, *args, "spacing=[3,3]", capsys=capsys)
    assert code == 2 and "spacing=" in stderr and "Traceback" not in stderr
    # without out_dir: the layout's own folder under the data folder
    code, stdout, _ = run_main(synth_main, *args[:1], *args[2:], f"paths.data_dir={tmp_path}",
                               capsys=capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "phantom_3d" / "cases.csv").is_file()
