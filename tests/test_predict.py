"""`stroke-predict` and `stroke-export`: a row per file, errors per file, ONNX equals PyTorch."""

from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED_DATASETS, compose_config, run_module

from stroke.cli.predict import run_prediction
from stroke.errors import ConfigError
from stroke.inference.onnx_export import export_onnx, max_abs_difference, read_onnx_metadata
from stroke.inference.predictor import resolve_inputs
from stroke.models import create_model

HEAD_CT_IMAGES = SHARED_DATASETS / "head_ct" / "images"
CLASSES = ["normal", "hemorrhagic", "ischemic"]


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def phantom_images(phantom_dir, n=6):
    return sorted(phantom_dir.glob("*/P*.png"))[:n]


def predict(overrides: list[str]):
    return run_prediction(compose_config("predict", ["progress=false", *overrides]))


@pytest.mark.skipif(not HEAD_CT_IMAGES.is_dir(), reason=f"{HEAD_CT_IMAGES} not present")
@pytest.mark.slow
def test_predict_head_ct_folder_with_a_corrupt_file(trained_run, tmp_path):
    """RGB head CT PNGs into a 1-channel phantom model; one corrupt file among them."""
    inputs = tmp_path / "images"
    shutil.copytree(HEAD_CT_IMAGES, inputs)
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    n_images = len(list(HEAD_CT_IMAGES.glob("*.png")))
    out = tmp_path / "predictions.csv"
    result = run_module(
        "stroke.cli.predict",
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"inputs={inputs}",
        f"output_csv={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "num_workers=0",
    )
    assert result.returncode != 0  # one file failed
    assert "1 of 201 files could not be read" in result.stderr
    rows = read_rows(out)
    assert len(rows) == n_images + 1
    failed = [r for r in rows if r["error"]]
    assert [r["path"] for r in failed] == [str(inputs / "corrupt.png")]
    assert "cannot decode image" in failed[0]["error"]
    for row in rows:
        if row["error"]:
            continue
        probs = [float(row[f"prob_{c}"]) for c in CLASSES]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert row["predicted_class"] == CLASSES[int(np.argmax(probs))]


def test_inputs_may_be_a_file_a_folder_a_glob_or_a_list(phantom_dir):
    one = phantom_images(phantom_dir, 1)[0]
    assert resolve_inputs(str(one)) == [one]
    folder = resolve_inputs(str(phantom_dir / "normal"))
    assert folder and all(p.parent.name == "normal" for p in folder)
    globbed = resolve_inputs(str(phantom_dir / "*" / "P0000_*.png"))
    assert globbed and all(p.name.startswith("P0000_") for p in globbed)
    assert len(resolve_inputs([str(one), str(phantom_dir / "normal")])) == len(folder) + 1
    with pytest.raises(ConfigError, match="neither a file, a folder nor a glob"):
        resolve_inputs(str(phantom_dir / "missing.png"))
    with pytest.raises(ConfigError, match="names no image files"):
        resolve_inputs(str(phantom_dir / "*.nothing"))


def test_flip_tta_and_grad_cam_overlays(trained_run, phantom_dir, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    inputs = phantom_images(phantom_dir)
    plain, _, failures = predict(
        [f"ckpt_path={ckpt}", f"inputs={inputs[0].parent}", f"output_csv={tmp_path / 'plain.csv'}"]
    )
    tta, _, _ = predict(
        [
            f"ckpt_path={ckpt}",
            f"inputs={inputs[0].parent}",
            "tta=true",
            "explain=true",
            f"explain_dir={tmp_path / 'cams'}",
            f"output_csv={tmp_path / 'tta.csv'}",
        ]
    )
    assert failures == 0
    plain_rows, tta_rows = read_rows(plain), read_rows(tta)
    assert [r["path"] for r in plain_rows] == [r["path"] for r in tta_rows]
    differences = [
        abs(float(a["prob_normal"]) - float(b["prob_normal"]))
        for a, b in zip(plain_rows, tta_rows, strict=True)
    ]
    assert max(differences) > 0  # the mirror changes the input, so the mean differs
    overlays = [r["gradcam"] for r in tta_rows]
    assert len(set(overlays)) == len(tta_rows)
    from PIL import Image

    with Image.open(overlays[0]) as image:
        assert image.mode == "RGB" and image.size == (32, 32)


def test_threshold_decides_binary_tasks_only(trained_run, phantom_dir, tmp_path):
    with pytest.raises(ConfigError, match="threshold=0.3 applies to binary tasks"):
        predict(
            [
                f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
                f"inputs={phantom_dir / 'normal'}",
                "threshold=0.3",
                f"output_csv={tmp_path / 'x.csv'}",
            ]
        )


@pytest.mark.slow
def test_stroke_export_matches_pytorch_and_onnx_predicts_the_same(
    trained_run, phantom_dir, tmp_path
):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    onnx_path = tmp_path / "model.onnx"
    result = run_module("stroke.cli.export", f"ckpt_path={ckpt}", f"output_path={onnx_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.search(r"max abs difference vs PyTorch: (\S+)", result.stdout)
    assert printed and float(printed.group(1)) < 1e-4
    metadata = read_onnx_metadata(onnx_path)
    assert metadata["class_names"] == CLASSES and metadata["image_size"] == 32

    folder = phantom_dir / "hemorrhagic"
    torch_csv, _, _ = predict(
        [
            f"ckpt_path={ckpt}",
            f"inputs={folder}",
            "batch_size=4",
            f"output_csv={tmp_path / 'torch.csv'}",
        ]
    )
    # the ONNX file alone: classes and preprocessing come from its metadata
    onnx_csv, _, _ = predict(
        [
            f"onnx_path={onnx_path}",
            "backend=onnx",
            f"inputs={folder}",
            "batch_size=5",
            f"output_csv={tmp_path / 'onnx.csv'}",
        ]
    )
    for a, b in zip(read_rows(torch_csv), read_rows(onnx_csv), strict=True):
        assert a["predicted_class"] == b["predicted_class"]
        for c in CLASSES:
            assert float(a[f"prob_{c}"]) == pytest.approx(float(b[f"prob_{c}"]), abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn_small", "resnet18", "efficientnet_b0"])
def test_onnx_matches_pytorch_for_shipped_backbones(name, tmp_path):
    torch.manual_seed(0)
    net = create_model(name, num_classes=3, in_chans=1).eval()
    path = export_onnx(net, tmp_path / f"{name}.onnx", input_channels=1, image_size=64)
    assert max_abs_difference(net, path, input_channels=1, image_size=64, batch_size=3) < 1e-4


def _keep_images(paths, preprocessing):
    """Run predict_files with a stand-in backend; return {file name: prediction}."""
    from stroke.inference.predictor import predict_files

    def backend(batch):  # logits of the right shape: reading is what is under test
        return np.zeros((len(batch), 2), dtype=np.float32)

    results = [
        r
        for batch in predict_files(paths, preprocessing, backend, keep_images=True, progress=False)
        for r in batch
    ]
    return {r.path.name: r for r in results}


def test_a_dicom_model_reads_raw_dicom_files_through_its_hu_windows(tmp_path):
    """PACS exports (.dcm or no suffix) go straight to stroke-predict, windowed as in training."""
    from dicom_factory import ct_dataset, save

    from stroke.data.preprocessing import Preprocessing

    hu = np.full((32, 32), 40.0)  # brain window W80/L40: grey matter at mid-grey
    hu[:, 16:] = 1000.0  # bone: white in the brain window, mid-grey in the bone window
    folder = tmp_path / "pacs"
    save(ct_dataset(hu), folder / "a.dcm")
    save(ct_dataset(hu), folder / "IM00001")  # no suffix: named directly
    paths = [*resolve_inputs(str(folder)), folder / "IM00001"]
    assert [p.name for p in paths] == ["a.dcm", "IM00001"]  # the folder lists .dcm

    def shown(value_hu, width, level):  # the grey level a window gives a HU value
        return int(np.clip((value_hu - (level - width / 2)) / width * 255, 0, 255))

    for width, level in ((80.0, 40.0), (2800.0, 600.0)):  # a brain and a bone window
        window = {"width": width, "level": level}
        got = _keep_images(paths, Preprocessing(32, 1, (0.5,), (0.25,), dicom_windows=(window,)))
        for name in ("a.dcm", "IM00001"):
            assert not got[name].error, got[name].error
            image = got[name].image[:, :, 0]
            assert abs(int(image[16, 8]) - shown(40.0, width, level)) <= 2
            assert abs(int(image[16, 24]) - shown(1000.0, width, level)) <= 2


def test_an_image_model_names_a_dicom_file_it_cannot_read(tmp_path, phantom_dir):
    from dicom_factory import ct_dataset, save

    from stroke.data.preprocessing import Preprocessing

    dicom = save(ct_dataset(np.zeros((16, 16))), tmp_path / "scan.dcm")
    png = phantom_images(phantom_dir, 1)[0]
    got = _keep_images([dicom, png], Preprocessing(16, 1, (0.5,), (0.25,)))
    assert "scan.dcm is a DICOM file" in got["scan.dcm"].error
    assert "records no HU window" in got["scan.dcm"].error
    assert not got[png.name].error and got[png.name].image.shape == (16, 16, 1)


def test_an_export_that_fails_leaves_the_previous_onnx_file_whole(tmp_path, monkeypatch):
    import onnx

    torch.manual_seed(0)
    net = create_model("cnn_small", num_classes=2, in_chans=1).eval()
    target = export_onnx(net, tmp_path / "model.onnx", 1, 32, metadata={"classes": ["a", "b"]})
    before = target.read_bytes()
    assert read_onnx_metadata(target) == {"classes": ["a", "b"]}

    def interrupted(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "load", interrupted)
    with pytest.raises(OSError, match="No space left"):
        export_onnx(net, target, 1, 32, metadata={"classes": ["c", "d"]})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no staging left


def test_a_model_validated_with_tta_is_predicted_and_served_with_it(
    trained_run, phantom_dir, tmp_path
):
    """model.tta=true is recorded: stroke-predict and stroke-serve apply it unless told not to."""
    from stroke.serve import ServedModel

    content = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    content["hyper_parameters"]["tta"] = True  # as `stroke-train model.tta=true` writes it
    ckpt = tmp_path / "tta.ckpt"
    torch.save(content, ckpt)
    folder = phantom_images(phantom_dir)[0].parent

    def probs(*overrides: str) -> list[list[str]]:
        out = tmp_path / f"{len(list(tmp_path.glob('*.csv')))}.csv"
        csv_path, _, _ = predict([f"ckpt_path={ckpt}", f"inputs={folder}", f"output_csv={out}",
                                  *overrides])  # fmt: skip
        return [[v for k, v in r.items() if k.startswith("prob_")] for r in read_rows(csv_path)]

    default, on, off = probs(), probs("tta=true"), probs("tta=false")
    assert default == on and default != off
    assert ServedModel.load(ckpt).tta and not ServedModel.load(ckpt, tta=False).tta
    assert not ServedModel.load(trained_run / "checkpoints" / "last.ckpt").tta
