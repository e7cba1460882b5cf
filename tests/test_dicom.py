"""DICOM in Hounsfield units: decoding, rescaling, scanning trees, labels and bad input."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pydicom
import pytest
from conftest import SHARED_DATASETS
from dicom_factory import CQ500, ct_dataset, non_image_objects, save
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from stroke.data import DicomSource
from stroke.data.dicom_pixels import read_dicom_image, read_hu
from stroke.data.windowing import resolve_windows
from stroke.errors import DatasetError

CQ500_DIR = SHARED_DATASETS / CQ500
needs_cq500 = pytest.mark.skipif(not CQ500_DIR.is_dir(), reason=f"{CQ500_DIR} not present")
CT_SMALL = get_testdata_file("CT_small.dcm")


# -- Hounsfield units ---------------------------------------------------------------------
def test_hu_of_pydicom_ct_file_match_hand_computation():
    # CT_small.dcm: RescaleSlope 1, RescaleIntercept -1024; stored values read by hand
    hu, ds = read_hu(CT_SMALL)
    assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, -1024)
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    for (row, col), stored in {(0, 0): 175, (64, 64): 1928, (100, 30): 1089}.items():
        assert hu[row, col] == stored * 1 - 1024


@needs_cq500
def test_hu_of_cq500_jpeg_lossless_match_hand_computation():
    path = CQ500_DIR / "CQ500-CT-0" / "CT000024.dcm"
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    hu, _ = read_hu(path)
    # stored values 1084, 1061, 64 and the padding value -2000; slope 1, intercept -1024
    assert hu[256, 256] == 1084 - 1024 == 60  # brain parenchyma
    assert hu[200, 300] == 1061 - 1024
    assert hu[256, 100] == 64 - 1024  # air
    assert hu[0, 0] == -2000 - 1024  # outside the scan field


def test_slope_and_intercept_are_applied(tmp_path):
    hu = np.array([[-1000, 0], [40, 1000]], dtype=np.float32)
    path = save(ct_dataset(hu, slope=2.0, intercept=-1000.0), tmp_path / "s.dcm")
    assert pydicom.dcmread(path).pixel_array.tolist() == [[0, 500], [520, 1000]]  # stored
    np.testing.assert_array_equal(read_hu(path)[0], hu)


def test_brain_window_on_dicom(tmp_path):
    hu = np.array([[-1000, 0, 40], [80, 200, 1000]], dtype=np.float32)
    path = save(ct_dataset(hu), tmp_path / "s.dcm")
    image = read_dicom_image(path, resolve_windows("brain"), in_chans=1)
    assert image.shape == (2, 3, 1) and image.dtype == np.uint8
    assert image[:, :, 0].tolist() == [[0, 0, 128], [255, 255, 255]]


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes_decode_to_the_same_hu(tmp_path, syntax):
    reference, _ = read_hu(CT_SMALL)
    ds = pydicom.dcmread(CT_SMALL)
    ds.compress(syntax)  # pydicom's RLE encoder; JPEG 2000 through pylibjpeg-openjpeg
    path = tmp_path / "compressed.dcm"
    ds.save_as(path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_hu(path)[0], reference)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_bundled_compressed_files_decode(name):
    reference, _ = read_hu(get_testdata_file("MR_small.dcm"))
    np.testing.assert_array_equal(read_hu(get_testdata_file(name))[0], reference)


def test_missing_decoder_names_transfer_syntax_and_package(tmp_path, monkeypatch):
    ds = pydicom.dcmread(CT_SMALL)
    ds.compress(JPEG2000Lossless)
    path = save(ds, tmp_path / "normal" / "j2k.dcm")
    # as if pylibjpeg-openjpeg (and pillow's JPEG 2000) were not installed
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    expected = (
        r"1\.2\.840\.10008\.1\.2\.4\.90 \(JPEG 2000 Image Compression \(Lossless Only\)\).*"
        r"pip install pylibjpeg pylibjpeg-openjpeg"
    )
    with pytest.raises(DatasetError, match=expected):
        DicomSource(tmp_path).load()  # before training, while listing
    with pytest.raises(DatasetError, match=expected):
        read_hu(path)


# -- scanning a tree ----------------------------------------------------------------------
def _slices(root, label, patient, n, **kwargs):
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    paths = []
    for i in range(n):
        hu = np.full((8, 8), 10.0 * i, dtype=np.float32)
        ds = ct_dataset(hu, patient, instance=n - i, z=5.0 * i, study_uid=study, series_uid=series)
        paths.append(save(ds, root / label / patient / f"IM{i}", **kwargs))
    return paths


def test_tree_at_any_depth_with_and_without_extension(tmp_path, caplog):
    _slices(tmp_path, "normal", "A", 3)
    _slices(tmp_path / "normal" / "deeper" / "still", "", "B", 2)  # nested further down
    _slices(tmp_path, "stroke", "C", 2, preamble=False)  # bare data sets, no 'DICM'
    non_image_objects(tmp_path / "stroke" / "C" / "extras")
    with caplog.at_level(logging.INFO, logger="stroke.data.dicom"):
        samples = DicomSource(tmp_path).load()
    assert len(samples) == 7
    assert {s.label for s in samples} == {"normal", "stroke"}
    assert {s.patient_id for s in samples} == {"A", "B", "C"}
    log = caplog.text
    for reason in ("1 DICOMDIR", "1 structured report (SR)", "1 without pixel data", "1 not DICOM"):
        assert reason in log


def test_slices_are_ordered_along_the_scan_axis(tmp_path):
    # InstanceNumber runs against the position here; geometry wins
    paths = _slices(tmp_path, "normal", "A", 4)
    _slices(tmp_path, "stroke", "B", 2)
    samples = [s for s in DicomSource(tmp_path).load() if s.patient_id == "A"]
    assert [s.path for s in samples] == paths


def test_labels_from_csv_by_uid_path_or_patient(tmp_path):
    paths = _slices(tmp_path / "export", "x", "A", 2) + _slices(tmp_path / "export", "x", "B", 2)
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in paths]
    root = tmp_path / "export"

    def table(name, header, rows):
        path = tmp_path / name
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])
        return path

    by_uid = table(
        "uid.csv",
        ["SOPInstanceUID", "finding"],
        [[u, "stroke" if i < 2 else "normal"] for i, u in enumerate(uids)],
    )
    samples = DicomSource(root, labels_csv=by_uid, label_column="finding").load()
    assert {s.patient_id: s.label for s in samples} == {"A": "stroke", "B": "normal"}

    rel = [p.relative_to(root).as_posix() for p in paths]
    by_path = table("path.csv", ["path", "label"], [[r, "normal"] for r in rel[:3]])
    samples = DicomSource(root, labels_csv=by_path, csv_key="path").load()
    assert len(samples) == 3  # the unlabelled fourth image is left out

    by_patient = table("patient.csv", ["PatientID", "label"], [["A", "stroke"], ["B", "normal"]])
    samples = DicomSource(root, labels_csv=by_patient, csv_key="patient_id").load()
    assert sorted(s.label for s in samples) == ["normal", "normal", "stroke", "stroke"]


def test_multi_frame_files_give_one_sample_per_frame(tmp_path):
    frames = np.stack([np.full((6, 6), 1024 + 40 * f, dtype=np.int16) for f in range(3)])
    ds = ct_dataset(np.zeros((6, 6)), "M")
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    save(ds, tmp_path / "normal" / "multi.dcm")
    _slices(tmp_path, "stroke", "B", 1)
    source = DicomSource(tmp_path, window="brain")
    samples = [s for s in source.load() if s.patient_id == "M"]
    assert [s.slice_index for s in samples] == [0, 1, 2]
    # frames are 0, 40 and 80 HU: black, mid-grey and white in the brain window
    assert [int(source.read(s, 1)[0, 0, 0]) for s in samples] == [0, 128, 255]


# -- bad input ----------------------------------------------------------------------------
def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r"data.root='.*' holds no files; expected DICOM"):
        DicomSource(tmp_path).load()


def test_tree_without_readable_dicom_is_an_error(tmp_path):
    non_image_objects(tmp_path / "normal")
    (tmp_path / "normal" / "scan.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError) as err:
        DicomSource(tmp_path).load()
    message = str(err.value)
    assert "no readable DICOM image under" in message and "scanned 5 file(s)" in message
    for reason in ("2 not DICOM", "1 DICOMDIR", "1 structured report (SR)", "1 without pixel data"):
        assert reason in message


def test_csv_naming_unknown_uids_is_an_error(tmp_path):
    _slices(tmp_path / "export", "x", "A", 2)
    labels = tmp_path / "labels.csv"
    labels.write_text("SOPInstanceUID,label\n1.2.3.999,stroke\n1.2.3.998,normal\n")
    with pytest.raises(
        DatasetError,
        match=r"2 SOPInstanceUID\(s\) in .*labels.csv match no image under .*"
        r"1\.2\.3\.998, 1\.2\.3\.999",
    ):
        DicomSource(tmp_path / "export", labels_csv=labels).load()


def test_files_directly_in_root_need_class_folders_or_a_csv(tmp_path):
    save(ct_dataset(np.zeros((4, 4))), tmp_path / "loose.dcm")
    with pytest.raises(DatasetError, match="lie directly in .*labels_csv"):
        DicomSource(tmp_path).load()


def test_bad_csv_key_is_named():
    with pytest.raises(DatasetError, match="source.csv_key='uid'"):
        DicomSource("/anywhere", labels_csv="x.csv", csv_key="uid")


@needs_cq500
def test_cq500_sample_lists_every_slice_with_its_patient():
    source = DicomSource(CQ500_DIR)
    samples = source.load()
    assert len(samples) == 17
    assert {s.patient_id for s in samples} == {"CQ500-CT-0", "CQ500-CT-1"}
    image = source.read(samples[0], 1)
    assert image.shape == (512, 512, 1) and image.dtype == np.uint8
    # multi-window on the same slice: three different views of one scan
    multi = DicomSource(CQ500_DIR, multi_window=["brain", "subdural", "bone"])
    stacked = multi.read(samples[0], 3)
    assert stacked.shape == (512, 512, 3)
    assert len({stacked[:, :, c].tobytes() for c in range(3)}) == 3
