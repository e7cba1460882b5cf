"""The RSNA hemorrhage layout (`data=rsna`) and the CQ500 layout (`data=cq500`).

Tiny CT slices written with pydicom: the label table's six rows per image, its duplicates
and conflicts, files and rows without each other, corrupt files, slice order on an oblique
series, the 12-bit offset fault, and CQ500's majority reads on the real sample.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import compose_train
from dicom_factory import CQ500, ct_dataset, save
from pydicom.uid import generate_uid

from stroke.build import build_datamodule
from stroke.data import RSNA_LABELS, Cq500Source, RsnaSource, StrokeDataModule
from stroke.data.audit import left_out_files
from stroke.data.cq500 import CQ500_FINDINGS, read_cq500_labels, scan_name
from stroke.data.dicom_pixels import has_offset_fault, read_hu
from stroke.data.rsna_table import parse_label_table
from stroke.data.samples import NO_FINDING, label_set
from stroke.data.windowing import WINDOW_PRESETS, apply_windows
from stroke.errors import DatasetError

# RSNA's UIDs are `ID_<hex>`; pydicom warns when the tests write them (the source reads
# them leniently, stroke.data.dicom_pixels.lenient_values)
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
HU = np.linspace(-1000, 1500, 64, dtype=np.float32).reshape(8, 8)


def rsna_image(folder: Path, image_id: str, hu: np.ndarray = HU, **kwargs) -> Path:
    """`<folder>/<image_id>.dcm`, a CT slice (8x8) whose SOPInstanceUID is the id."""
    ds = ct_dataset(hu, **kwargs)
    ds.SOPInstanceUID = image_id
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return save(ds, folder / f"{image_id}.dcm")


def label_rows(image_id: str, positives: set[str] = frozenset()) -> list[tuple[str, int]]:
    """The six rows of one image in RSNA's form."""
    return [(f"{image_id}_{name}", int(name in positives)) for name in RSNA_LABELS]


def write_table(path: Path, rows: list[tuple[str, int | str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "Label"])
        writer.writerows(rows)
    return path


def rsna_tree(root: Path, images: dict[str, set[str]], **kwargs) -> Path:
    """An RSNA folder: stage_2_train.csv and stage_2_train_images/ for `{id: positives}`."""
    folder = root / "stage_2_train_images"
    rows = []
    for i, (image_id, positives) in enumerate(images.items()):
        rsna_image(folder, image_id, patient_id=f"P{i % 4}", instance=i, **kwargs)
        rows += label_rows(image_id, positives)
    write_table(root / "stage_2_train.csv", rows)
    return root


# -- the label table -----------------------------------------------------------------------
def test_six_rows_per_image_become_one_sample_with_its_label_set(tmp_path):
    root = rsna_tree(
        tmp_path,
        {
            "ID_aa": set(),
            "ID_bb": {"subdural", "any"},
            "ID_cc": {"epidural", "subarachnoid", "any"},
        },
    )
    source = RsnaSource(root)
    samples = source.load()
    by_id = {s.path.stem: s for s in samples}
    assert sorted(by_id) == ["ID_aa", "ID_bb", "ID_cc"]
    assert by_id["ID_aa"].label == NO_FINDING
    assert by_id["ID_bb"].label == "any|subdural"
    assert label_set(by_id["ID_cc"].label) == {"any", "epidural", "subarachnoid"}
    ds = pydicom.dcmread(by_id["ID_bb"].path)
    assert by_id["ID_bb"].patient_id == ds.PatientID == "P1"
    assert by_id["ID_bb"].series_id == ds.SeriesInstanceUID
    assert source.counts["images_in_table"] == 3 and source.counts["rows"] == 18
    assert source.counts["images"] == 3 and source.left_out == []


def test_an_identical_duplicate_row_is_kept_once_and_counted(tmp_path, caplog):
    root = rsna_tree(tmp_path, {"ID_aa": {"any", "subdural"}, "ID_bb": set()})
    rows = label_rows("ID_aa", {"any", "subdural"}) + label_rows("ID_bb")
    write_table(root / "stage_2_train.csv", rows + [("ID_aa_subdural", 1), ("ID_bb_any", 0)])
    source = RsnaSource(root)
    with caplog.at_level(logging.INFO, logger="stroke.data.rsna"):
        samples = source.load()
    assert {s.path.stem: s.label for s in samples} == {"ID_aa": "any|subdural", "ID_bb": "none"}
    assert source.counts["duplicates"] == 2 and source.counts["rows"] == 14
    assert "2 duplicate row(s) kept once" in caplog.text


def test_a_conflicting_duplicate_names_both_rows(tmp_path):
    rows = label_rows("ID_aa") + label_rows("ID_bb") + [("ID_aa_subdural", 1)]
    table = write_table(tmp_path / "stage_2_train.csv", rows)
    with pytest.raises(DatasetError) as err:
        parse_label_table(table)
    # the header is line 1: ID_aa_subdural,0 is line 6, the contradicting row line 14
    assert "line 6 (ID_aa_subdural,0) and line 14 (ID_aa_subdural,1)" in str(err.value)


@pytest.mark.parametrize(
    ("row", "named"),
    [
        (("ID_aa_hematoma", 0), "ID 'ID_aa_hematoma' is not ID_<SOPInstanceUID>_<subtype>"),
        (("aa_epidural", 0), "ID 'aa_epidural' is not"),
        (("ID_aa_epidural", "yes"), "Label 'yes' of ID_aa_epidural is not 0 or 1"),
    ],
)
def test_a_row_that_does_not_parse_is_an_error_naming_its_line(tmp_path, row, named):
    table = write_table(tmp_path / "t.csv", label_rows("ID_bb") + [row])
    with pytest.raises(DatasetError, match=f"line 8 of .*{named}"):
        parse_label_table(table)


def test_a_table_without_the_rsna_header_is_refused(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("image,label\nID_aa_any,0\n")
    with pytest.raises(DatasetError, match=r"header is \['image', 'label'\], expected ID,Label"):
        parse_label_table(table)


def test_files_and_rows_without_each_other_are_counted_and_left_out(tmp_path, caplog):
    root = rsna_tree(tmp_path, {"ID_aa": set(), "ID_bb": {"any", "subdural"}, "ID_cc": set()})
    folder = root / "stage_2_train_images"
    (folder / "ID_cc.dcm").unlink()  # listed without its file
    rsna_image(folder, "ID_dd")  # a file without labels
    rows = label_rows("ID_aa") + label_rows("ID_bb") + label_rows("ID_cc")
    rows += label_rows("ID_ee")[:4]  # fewer than six rows
    rsna_image(folder, "ID_ee")
    write_table(root / "stage_2_train.csv", rows)
    source = RsnaSource(root)
    with caplog.at_level(logging.INFO, logger="stroke.data.rsna"):
        samples = source.load()
    assert sorted(s.path.stem for s in samples) == ["ID_aa", "ID_bb"]
    counts = source.counts
    assert (counts["without_file"], counts["without_labels"], counts["incomplete"]) == (1, 1, 1)
    assert counts["files"] == 4 and counts["images_in_table"] == 4
    reasons = {Path(p).name: r for p, r in source.left_out}
    assert reasons == {
        "ID_cc.dcm": "listed in stage_2_train.csv without its file",
        "ID_dd.dcm": "no labels in stage_2_train.csv",
        "ID_ee.dcm": "no row in stage_2_train.csv for subdural, any",
    }
    assert "1 image(s) listed in stage_2_train.csv have no file" in caplog.text
    assert "1 file(s) in" in caplog.text and "have no labels" in caplog.text
    # skipped.csv gets all three, the one without a file too (it is not on disk to walk)
    audit = {Path(item.path).name: item.reason for item in left_out_files(source, samples)}
    assert {name: audit[name] for name in reasons} == reasons


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: data[:-40], "the file ends 40 bytes before its pixel data does"),
        (lambda data: data[:200], "no pixel data"),
        (lambda data: b"\x00" * 128 + b"DICM" + b"\xff" * 64, "corrupt DICOM"),
        (lambda data: b"not a DICOM file at all", "corrupt DICOM"),
    ],
    ids=["truncated pixel data", "truncated header", "garbage after DICM", "not DICOM"],
)
def test_a_corrupt_file_is_skipped_with_its_name(tmp_path, caplog, damage, why):
    # 64 x 64: pixel data past read_header_tags' defer_size, left on disk as real slices' are
    root = rsna_tree(
        tmp_path, {"ID_aa": set(), "ID_bb": {"any", "epidural"}}, hu=np.zeros((64, 64))
    )
    broken = root / "stage_2_train_images" / "ID_bb.dcm"
    broken.write_bytes(damage(broken.read_bytes()))
    source = RsnaSource(root)
    caplog.clear()  # writing `ID_<hex>` UIDs warned; reading them must not
    with caplog.at_level(logging.INFO, logger="stroke.data.rsna"):
        samples = source.load()
    assert [s.path.stem for s in samples] == ["ID_aa"]
    assert source.counts["corrupt"] == 1
    [(path, reason)] = source.left_out
    assert path == str(broken) and reason.startswith("corrupt DICOM") and why in reason
    assert (
        f"skipped {broken}: corrupt DICOM" in caplog.text
        and "1 corrupt DICOM file(s)" in caplog.text
    )
    assert "Invalid value for VR UI" not in caplog.text  # read leniently, no line per UID


def test_no_usable_image_is_an_error_with_the_counts(tmp_path):
    root = rsna_tree(tmp_path, {"ID_aa": set()})
    write_table(root / "stage_2_train.csv", label_rows("ID_zz"))
    with pytest.raises(DatasetError, match="1 listed without a file, 1 file.s. without labels"):
        RsnaSource(root).load()


# -- slice order ---------------------------------------------------------------------------
def test_an_oblique_series_is_ordered_along_its_normal_not_by_z_or_name(tmp_path):
    """A gantry-tilted series: slices step along the tilted normal, with in-plane offsets,
    so z alone, InstanceNumber and file names all give a different order."""
    tilt = np.deg2rad(30)
    row, col = np.array([1.0, 0, 0]), np.array([0, np.cos(tilt), np.sin(tilt)])
    normal = np.cross(row, col)
    rng = np.random.default_rng(0)
    folder, series, rows = tmp_path / "stage_2_train_images", generate_uid(), []
    order = rng.permutation(8)  # file k holds the slice at place order[k] along the normal
    offsets = [-40, 30, -20, 40, -30, 20, -10, 10]
    for k, place in enumerate(order):
        image_id = f"ID_{rng.integers(16**8):08x}"
        ds = ct_dataset(HU, patient_id="P1", series_uid=series, instance=int(order[-1 - k]))
        ds.SOPInstanceUID = image_id
        ds.ImageOrientationPatient = [*row, *col]
        ds.ImagePositionPatient = list(place * 5.0 * normal + offsets[place] * col)
        save(ds, folder / f"{image_id}.dcm")
        rows += label_rows(image_id)
    write_table(tmp_path / "stage_2_train.csv", rows)
    samples = RsnaSource(tmp_path).load()
    places = [
        int(np.rint(np.dot(pydicom.dcmread(s.path).ImagePositionPatient, normal) / 5))
        for s in samples
    ]
    assert places == list(range(8))
    assert [s.slice_position for s in samples] == pytest.approx([5.0 * p for p in range(8)])
    assert {s.series_id for s in samples} == {series}
    # the test means something: z, instance numbers and names do not give that order
    z = [pydicom.dcmread(s.path).ImagePositionPatient[2] for s in samples]
    instances = [pydicom.dcmread(s.path).InstanceNumber for s in samples]
    assert z != sorted(z) and instances != sorted(instances)
    assert [s.path.name for s in samples] != sorted(s.path.name for s in samples)


def test_samples_are_in_patient_series_position_order(tmp_path):
    folder, rows, rng = tmp_path / "stage_2_train_images", [], np.random.default_rng(1)
    series = {"P2": generate_uid(), "P1": generate_uid()}
    for i in rng.permutation(6):
        patient = "P1" if i % 2 else "P2"
        image_id = f"ID_{i:02d}"
        rsna_image(folder, image_id, patient_id=patient, series_uid=series[patient], z=-i)
        rows += label_rows(image_id)
    write_table(tmp_path / "stage_2_train.csv", rows)
    samples = RsnaSource(tmp_path).load()
    assert [(s.patient_id, s.slice_position) for s in samples] == [
        ("P1", -5.0), ("P1", -3.0), ("P1", -1.0), ("P2", -4.0), ("P2", -2.0), ("P2", 0.0)
    ]  # fmt: skip


# -- the 12-bit offset fault ---------------------------------------------------------------
def offset_fault_image(folder: Path, image_id: str, hu: np.ndarray) -> Path:
    """A slice as the faulty RSNA files are: 12-bit unsigned, intercept 0, HU mod 4096."""
    ds = ct_dataset(hu)
    ds.SOPInstanceUID = image_id
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleIntercept = 0.0
    ds.PixelData = np.mod(np.rint(hu).astype(np.int32), 4096).astype(np.uint16).tobytes()
    return save(ds, folder / f"{image_id}.dcm")


def test_the_offset_fault_is_detected_and_read_as_the_intended_hu(tmp_path, caplog):
    hu = np.linspace(-1000, 2000, 64).reshape(8, 8).round()
    folder = tmp_path / "stage_2_train_images"
    path = offset_fault_image(folder, "ID_bad", hu)
    rsna_image(folder, "ID_good")
    write_table(tmp_path / "stage_2_train.csv", label_rows("ID_bad") + label_rows("ID_good"))
    assert has_offset_fault(pydicom.dcmread(path, stop_before_pixels=True))
    raw, _ = read_hu(path)
    assert raw.min() >= 0 and raw.max() > 3000  # read with its own intercept, air is +3096
    corrected, _ = read_hu(path, correct_offset=True)
    np.testing.assert_array_equal(corrected, hu)
    source = RsnaSource(tmp_path, window="brain")
    with caplog.at_level(logging.INFO, logger="stroke.data.rsna"):
        samples = source.load()
    assert source.counts["offset_fault"] == 1 and "1 with the 12-bit offset fault" in caplog.text
    by_id = {s.path.stem: s for s in samples}
    np.testing.assert_array_equal(
        source.read(by_id["ID_bad"], 1),
        apply_windows(hu.astype(np.float32), [WINDOW_PRESETS["brain"]], 1, None),
    )
    # a file without the fault keeps its own rescale
    good, _ = read_hu(by_id["ID_good"].path, correct_offset=True)
    np.testing.assert_allclose(good, HU, atol=0.5)


# -- with the datamodule -------------------------------------------------------------------
def test_the_datamodule_sets_up_on_rsna_with_patient_grouped_splits(tmp_path):
    images = {f"ID_{i:03d}": ({"any", "subdural"} if i % 3 == 0 else set()) for i in range(40)}
    root = rsna_tree(tmp_path, images)
    source = RsnaSource(root, multi_window=["brain", "subdural", "bone"])
    dm = StrokeDataModule(source, image_size=16, in_chans=3, num_workers=0, cache=False)
    dm.setup("fit")
    by_patient: dict[str, set[str]] = {}
    for sample in dm.samples:
        by_patient.setdefault(sample.patient_id, set()).add(sample.split)
    assert len(by_patient) == 4 and all(len(splits) == 1 for splits in by_patient.values())
    assert set(dm.class_names) == {"none", "any|subdural"}
    assert (
        dm.preprocessing.record()["dicom_windows"] == source.preprocessing_record()["dicom_windows"]
    )
    image = dm.datasets["train"][0][0]
    assert tuple(image.shape) == (3, 16, 16)


def test_data_rsna_builds_the_source_with_the_winners_three_windows(tmp_path):
    images = {f"ID_{i:03d}": ({"any", "epidural"} if i % 2 else set()) for i in range(16)}
    root = rsna_tree(tmp_path / "rsna", images)
    cfg = compose_train(["data=rsna", f"data.root={root}", "data.cache=false"], tmp_path / "run")
    datamodule = build_datamodule(cfg)
    assert isinstance(datamodule.source, RsnaSource)
    assert datamodule.source.images_dir == root / "stage_2_train_images"
    assert datamodule.source.labels_csv == root / "stage_2_train.csv"
    assert [w.level for w in datamodule.source.windows] == [40, 80, 600]  # brain, subdural, bone
    datamodule.setup("fit")
    assert len(datamodule.samples) == 16 and datamodule.preprocessing.in_chans == 3


# -- CQ500 ---------------------------------------------------------------------------------
def reads_csv(path: Path, reads: dict[str, list[set[str]]]) -> Path:
    """reads.csv in CQ500's form: each scan's three readers' findings (CQ500 names)."""
    findings = [*CQ500_FINDINGS, "Fracture"]
    header = ["name", "Category"] + [f"R{r}:{f}" for r in (1, 2, 3) for f in findings]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for name, by_reader in reads.items():
            cells = [int(f in by_reader[r]) for r in range(3) for f in findings]
            writer.writerow([name, "B1", *cells])
    return path


def test_cq500_reads_are_a_majority_per_finding(tmp_path):
    table = reads_csv(
        tmp_path / "reads.csv",
        {
            "CQ500-CT-0": [{"ICH", "SAH"}, set(), set()],
            "CQ500-CT-7": [{"ICH", "SDH", "IVH"}, {"ICH", "SDH"}, {"EDH", "Fracture"}],
        },
    )
    assert read_cq500_labels(table) == {"CQ500-CT-0": "none", "CQ500-CT-7": "any|subdural"}
    assert scan_name("CQ500CT7 CQ500CT7") == scan_name("CQ500-CT-7") == "CQ500-CT-7"
    assert set(CQ500_FINDINGS.values()) == set(RSNA_LABELS)


def test_cq500_gives_every_slice_of_a_scan_its_label_set(tmp_path):
    for scan, patient in (("CQ500CT3 CQ500CT3", "CQ500-CT-3"), ("CQ500-CT-4", "CQ500-CT-4")):
        series = generate_uid()
        for k in range(3):
            ds = ct_dataset(HU, patient_id=patient, series_uid=series, z=float(k))
            save(ds, tmp_path / scan / "Unknown Study" / "CT PLAIN" / f"CT{k:06d}.dcm")
    reads_csv(
        tmp_path / "reads.csv",
        {"CQ500-CT-3": [{"ICH", "IPH"}] * 3, "CQ500-CT-4": [set()] * 3},
    )
    samples = Cq500Source(tmp_path).load()
    assert [(s.patient_id, s.label) for s in samples] == [
        ("CQ500-CT-3", "any|intraparenchymal")
    ] * 3 + [("CQ500-CT-4", "none")] * 3
    assert [s.slice_position for s in samples[:3]] == [0.0, 1.0, 2.0]


@pytest.mark.skipif(not (SHARED / CQ500).is_dir(), reason=f"the real sample {CQ500} is absent")
def test_the_real_cq500_sample_gets_the_reads_of_its_readme(tmp_path):
    # shared/datasets/README.md: CT-0 negative by majority (one reader of three marked ICH
    # and SAH); CT-1 ICH, intraparenchymal and subarachnoid by all three, IVH by one
    table = reads_csv(
        tmp_path / "reads.csv",
        {
            "CQ500-CT-0": [{"ICH", "SAH"}, set(), set()],
            "CQ500-CT-1": [
                {"ICH", "IPH", "SAH", "IVH"},
                {"ICH", "IPH", "SAH"},
                {"ICH", "IPH", "SAH"},
            ],
        },
    )
    source = Cq500Source(
        SHARED / CQ500, reads_csv=table, multi_window=["brain", "subdural", "bone"]
    )
    samples = source.load()
    labels = {}
    for s in samples:
        labels.setdefault(s.path.parent.name, set()).add(s.label)
    assert labels == {"CQ500-CT-0": {"none"}, "CQ500-CT-1": {"any|intraparenchymal|subarachnoid"}}
    assert len(samples) == 17
    positions = [s.slice_position for s in samples if s.path.parent.name == "CQ500-CT-0"]
    assert positions == sorted(positions) and len(set(positions)) == 16
    image = source.read(samples[0], 3)  # JPEG Lossless: needs pylibjpeg
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8 and image.std() > 0
