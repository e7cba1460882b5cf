"""The reader registry (stroke/data/readers.py): formats recognised by content, and a new
format that plugs in through `register_reader` alone and then trains, predicts and serves."""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from commands import run_main
from conftest import TINY, compose_train
from dicom_factory import ct_dataset, save
from fastapi.testclient import TestClient
from PIL import Image

from stroke.cli import predict as predict_cli
from stroke.data.readers import (
    FileFormat,
    FileReader,
    Header,
    HeaderError,
    format_of,
    register_reader,
    unregister_reader,
)
from stroke.data.samples import Sample
from stroke.errors import DatasetError
from stroke.serve import ServedModel, ServeSettings, create_app
from stroke.serve.uploads import UploadRejected, check_upload, make_upload, sniff

# -- a toy format: its own magic bytes, a height and width, then 8-bit grey pixels -----------------
TOY_MAGIC = b"\x93TOYCT\r\n"
TOY_HEADER = struct.Struct("<8sHH")


def toy_bytes(pixels: np.ndarray) -> bytes:
    height, width = pixels.shape
    return TOY_HEADER.pack(TOY_MAGIC, height, width) + pixels.astype(np.uint8).tobytes()


def _toy_header(data: bytes) -> Header:
    if len(data) < TOY_HEADER.size:
        raise HeaderError("the toy header is cut short")
    _, height, width = TOY_HEADER.unpack_from(data)
    return Header(height * width, {})


def _decode_toy(path: Path, in_chans: int, windows, index) -> np.ndarray:
    data = Path(path).read_bytes()
    _, height, width = TOY_HEADER.unpack_from(data)
    pixels = np.frombuffer(data, np.uint8, height * width, TOY_HEADER.size)
    return np.repeat(pixels.reshape(height, width, 1), in_chans, axis=2)


TOY = FileFormat(
    "toy",
    "TOY",
    (".toy",),
    _decode_toy,
    signatures=((0, TOY_MAGIC),),
    header=_toy_header,
)


@pytest.fixture
def toy_format():
    yield register_reader(TOY)
    unregister_reader("toy")


def phantom_pixels(rng: np.random.Generator, lesion: bool, size: int = 24) -> np.ndarray:
    image = rng.integers(0, 60, (size, size), dtype=np.uint8)
    if lesion:
        image[4:12, 4:12] = 220
    return image


# -- recognition by content ----------------------------------------------------------------------
def test_the_content_decides_the_format_not_the_name(tmp_path):
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    (tmp_path / "scan.png").write_bytes(png.getvalue())
    save(ct_dataset(np.zeros((8, 8))), tmp_path / "really_dicom.png")
    save(ct_dataset(np.zeros((8, 8))), tmp_path / "bare.dcm", preamble=False)
    nifti = nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4))
    nib.save(nifti, tmp_path / "volume.nii.gz")
    (tmp_path / "volume.bin").write_bytes(gzip.compress((tmp_path / "volume.nii.gz").read_bytes()))
    (tmp_path / "renamed").write_bytes(gzip.decompress((tmp_path / "volume.nii.gz").read_bytes()))
    (tmp_path / "notes.txt").write_text("not an image")
    names = {p.name: (format_of(p).name if format_of(p) else None) for p in tmp_path.iterdir()}
    assert names == {
        "scan.png": "png",
        "really_dicom.png": "dicom",  # the DICM marker outranks the suffix
        "bare.dcm": "dicom",  # no preamble: the suffix is all there is
        "volume.nii.gz": "nifti",  # gzip whose first bytes are a NIfTI header
        "volume.bin": None,  # gzip of gzip: no NIfTI header inside, whatever it is
        "renamed": "nifti",  # an uncompressed NIfTI needs no suffix
        "notes.txt": None,
    }


def test_register_reader_refuses_a_format_it_could_not_recognise():
    with pytest.raises(DatasetError, match="needs signatures or a recognise function"):
        register_reader(FileFormat("blind", "BLIND", (".blind",), _decode_toy))
    with pytest.raises(DatasetError, match="lower-case suffixes"):
        register_reader(FileFormat("loud", "LOUD", ("LOUD",), _decode_toy, ((0, b"LOUD"),)))


# -- a new format through the registry alone -----------------------------------------------------
def test_a_toy_format_is_read_and_checked_on_upload_through_the_registry_alone(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "x.toy"
    path.write_bytes(toy_bytes(pixels))
    reader = FileReader()
    with pytest.raises(DatasetError, match="content is not PNG, JPEG, DICOM, NIfTI"):
        reader(Sample(path, "", ""), 1)  # not registered: nothing reads it
    with pytest.raises(UploadRejected, match="not PNG, JPEG or DICOM"):
        sniff(path.read_bytes())

    register_reader(TOY)
    try:
        np.testing.assert_array_equal(reader(Sample(path, "", ""), 1)[:, :, 0], pixels)
        upload = check_upload(make_upload(0, "shown.png", path.read_bytes()), 2**20, 1000)
        assert (upload.kind, upload.suffix) == ("toy", ".toy")
        bomb = make_upload(1, "bomb.toy", TOY_HEADER.pack(TOY_MAGIC, 60_000, 60_000))
        with pytest.raises(UploadRejected, match="3,600,000,000 pixels.*decompression bomb"):
            check_upload(bomb, 2**20, 1000)
        with pytest.raises(UploadRejected, match=r"^the content is not PNG, JPEG, DICOM or TOY"):
            sniff(b"plain text")
    finally:
        unregister_reader("toy")


def test_a_toy_format_trains_predicts_and_serves(toy_format, tmp_path, capsys):
    """Registered once, the toy format is what training lists and decodes (FolderSource),
    what stroke-predict reads (the real CLI) and what stroke-serve accepts, and each reads
    the same pixels as a PNG of them."""
    from stroke.cli.train import train

    rng = np.random.default_rng(0)
    root = tmp_path / "toys"
    for label in ("normal", "lesion"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            image = toy_bytes(phantom_pixels(rng, label == "lesion"))
            (root / label / f"p{i:03d}_{label}.toy").write_bytes(image)
    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "data=folder",
        f"data.root={root}",
        "model=cnn_small",
        "data.cache=false",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "evaluation.n_boot=10",
    ]
    train(compose_train(overrides, run_dir))
    # no other file is there: the class folders hold images because the registry says so
    ckpt = Path(json.loads((run_dir / "metrics.json").read_text())["best_model_path"])

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    pixels = [phantom_pixels(rng, lesion) for lesion in (False, True, True)]
    for i, image in enumerate(pixels):
        (inputs / f"scan{i}.toy").write_bytes(toy_bytes(image))
        Image.fromarray(image).save(inputs / f"scan{i}.png")
    out = tmp_path / "predictions.csv"
    code, _, err = run_main(
        predict_cli.main,
        f"ckpt_path={ckpt}",
        f"inputs={inputs}",  # a folder: searched for the toy suffix too
        f"output_csv={out}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'predict'}",
        capsys=capsys,
    )
    assert code == 0, err
    with out.open(newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert len(rows) == 6 and not [r["error"] for r in rows.values() if r["error"]]

    def probs(row: dict) -> list[float]:
        return [float(v) for k, v in row.items() if k.startswith("prob_")]

    for i in range(3):
        assert probs(rows[f"scan{i}.toy"]) == pytest.approx(probs(rows[f"scan{i}.png"]), abs=1e-6)

    (tmp_path / "uploads").mkdir()
    app = create_app(ServedModel.load(ckpt), ServeSettings(tmp_dir=str(tmp_path / "uploads")))
    with TestClient(app, raise_server_exceptions=False) as client:
        files = [("files", ("scan0.dat", toy_bytes(pixels[0]), "application/octet-stream"))]
        response = client.post("/api/predict", files=files)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["error"] is None and result["type"] == "toy"
    served = [result["probabilities"][k[5:]] for k in rows["scan0.toy"] if k.startswith("prob_")]
    assert served == pytest.approx(probs(rows["scan0.toy"]), abs=1e-5)
