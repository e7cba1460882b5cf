"""Every decode goes through one guard (stroke/data/decoding.py): a decoder's failure, in the
main process, a loader worker, the cache builder or stroke-predict, is one line naming the
file (issue 26), never the decoder's or the worker's traceback."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pydicom
import pytest
from bad_inputs import bomb_png, truncated
from commands import run_main
from conftest import TINY, make_class_folders, run_module
from dicom_factory import ct_dataset
from pydicom.encaps import encapsulate
from test_nifti import ct_volume, write_volume
from torch.utils.data import DataLoader, Dataset

from stroke.cli import predict as predict_cli
from stroke.data import NiftiSource
from stroke.data.images import ImageLoader, read_image
from stroke.data.readers import FileReader
from stroke.data.samples import Sample
from stroke.errors import ConfigError, DatasetError

TRAIN = [*TINY, "data=folder", "model=cnn_small", "evaluation.n_boot=10"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_bomb_in_a_training_folder_is_one_line_while_the_cache_is_built(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 6, "stroke": 6}, patients=3)
    bomb = bomb_png(root / "stroke" / "p000_huge.png")
    result = run_module("stroke.cli.train", *TRAIN, f"data.root={root}",
                        f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    assert error_lines(result.stderr) == [
        f"error: image {bomb} claims 400,000,000 pixels, over Pillow's decompression-bomb "
        "limit of 178,956,970: refused before decoding"
    ]
    assert "Traceback" not in result.stderr


def test_a_truncated_png_read_in_a_loader_worker_is_the_original_line(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 6, "stroke": 6}, patients=3)
    bad = truncated(root / "normal" / "p001_normal_001.png")
    result = run_module("stroke.cli.train", *TRAIN, f"data.root={root}", "data.cache=false",
                        "data.num_workers=1", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    assert error_lines(result.stderr) == [
        f"error: cannot decode image {bad}: OSError: image file is truncated"
    ]
    assert "Caught" not in result.stderr and "Traceback" not in result.stderr


class _Refusing(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise ConfigError("data.in_chans=4 is not 1 or 3", hint="use data.in_chans=3")


def test_a_worker_s_error_arrives_with_its_own_message_and_hint():
    with pytest.raises(ConfigError) as err:
        next(iter(DataLoader(_Refusing(), num_workers=1)))
    assert str(err.value) == "data.in_chans=4 is not 1 or 3"
    assert err.value.hint == "use data.in_chans=3"


def test_a_message_that_only_looks_like_a_worker_s_is_kept():
    assert str(DatasetError("Caught you")) == "Caught you"


def test_an_unreadable_image_says_so_rather_than_a_write_error(tmp_path):
    folder = tmp_path / "images.png"
    folder.mkdir()
    with pytest.raises(DatasetError, match=r"cannot read image .*images\.png: it is a folder"):
        read_image(folder, in_chans=1)


@pytest.mark.parametrize(("keep", "words"), [(0.6, "EOFError"), (0.05, "EOFError")])
def test_a_truncated_nifti_volume_names_the_file(tmp_path, keep, words):
    for label in ("normal", "stroke"):
        write_volume(tmp_path / label / "v1.nii.gz", ct_volume(n_slices=6, size=64))
    bad = write_volume(tmp_path / "stroke" / "bad.nii.gz", ct_volume(n_slices=6, size=64))
    truncated(bad, keep)
    source = NiftiSource(tmp_path)
    loader = ImageLoader(16, 1, source.read)
    try:
        samples = source.load()
    except DatasetError as err:  # a header cut short: named while listing
        assert str(bad) in str(err)
        return
    with pytest.raises(DatasetError, match=rf"cannot decode NIfTI volume {bad}: {words}"):
        for sample in samples:
            loader(sample)


def _dicom(tmp_path, name: str, **changes) -> Sample:
    ds = copy.deepcopy(ct_dataset(np.zeros((16, 16))))
    for key, value in changes.items():
        if key == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = value
            ds.PixelData = encapsulate([b"\x00" * 64])
        else:
            setattr(ds, key, value)
    path = tmp_path / name
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return Sample(path, label="x", patient_id="p")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"TransferSyntaxUID": "1.2.840.10008.1.2.4.100"}, "has no pixel-data decoder"),
        ({"TransferSyntaxUID": "1.2.3.4.5"}, "is not a DICOM transfer syntax"),
        ({"TransferSyntaxUID": "1.2.840.10008.1.2.4.50"}, "cannot decode the pixel data"),
        ({"BitsAllocated": 7}, "'Bits Allocated' value of '7' is invalid"),
        ({"Rows": 4000}, "less than expected"),
    ],
)  # fmt: skip
def test_a_dicom_that_cannot_be_decoded_names_the_file(tmp_path, changes, words):
    sample = _dicom(tmp_path, "bad.dcm", **changes)
    with pytest.raises(DatasetError) as err:
        ImageLoader(16, 1, FileReader(["brain"]))(sample)
    assert str(sample.path) in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_a_dicom_header_that_cannot_be_parsed_names_the_file(tmp_path):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    with pytest.raises(DatasetError, match=str(path)):
        ImageLoader(16, 1, FileReader(["brain"]))(Sample(path, label="x", patient_id="p"))


def test_stroke_predict_names_a_bomb_in_its_row_and_predicts_the_rest(trained_run, tmp_path):
    inputs = make_class_folders(tmp_path / "in", {"normal": 2})
    bomb = bomb_png(inputs / "huge.png")
    out = tmp_path / "predictions.csv"
    code, _, _ = run_main(predict_cli.main, f"ckpt_path={trained_run / 'checkpoints/last.ckpt'}",
                          f"inputs={inputs}", f"output_csv={out}", "num_workers=0",
                          f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert code == 3
    rows = {row["path"]: row for row in csv.DictReader(out.open())}
    assert len(rows) == 3 and sum(bool(r["error"]) for r in rows.values()) == 1
    assert "decompression-bomb limit" in rows[str(bomb)]["error"]


def test_a_float_image_with_nan_pixels_is_refused(tmp_path):
    from PIL import Image

    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)).save(path)
    with pytest.raises(DatasetError, match=r"nan\.tif holds NaN or infinite values"):
        read_image(path, in_chans=1)


def test_nifti_nan_voxels_read_as_background_and_an_all_nan_slice_is_refused(tmp_path):
    from stroke.data.nifti import read_axial_slice

    data = ct_volume(n_slices=2, size=16).astype(np.float32)
    data[:4, :, 0] = np.nan
    data[:, :, 1] = np.nan
    path = write_volume(tmp_path / "v.nii.gz", data)
    first = read_axial_slice(path, 0)
    assert np.isfinite(first).all() and first.min() == np.nanmin(data[:, :, 0])
    with pytest.raises(DatasetError, match=r"v\.nii\.gz: axial slice 1 holds no finite value"):
        read_axial_slice(path, 1)
