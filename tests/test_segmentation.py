"""Segmenters end to end: smp networks, offline weights, train, eval, predict, export, sweeps."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import TINY, compose_config, run_module
from PIL import Image

from stroke.checkpoint import FORMAT_VERSION, RECORD_KEY, read_checkpoint
from stroke.cli.eval import evaluate_checkpoint
from stroke.cli.export import export_checkpoint
from stroke.cli.predict import run_prediction
from stroke.errors import ConfigError
from stroke.tasks.classification.checkpoint import load_classifier
from stroke.tasks.segmentation.checkpoint import load_segmenter
from stroke.tasks.segmentation.metrics import METRICS
from stroke.tasks.segmentation.module import StrokeSegmenter
from stroke.tasks.segmentation.networks import create_segmentation_network

LESIONS = ["hemorrhage", "infarct"]
SEGMENTATION_METRICS = [m.name for m in METRICS]  # every one, logged and reported


@pytest.mark.parametrize(
    ("architecture", "encoder"),
    [
        ("unet", "tu-resnet10t"),
        ("unetplusplus", "resnet18"),
        ("fpn", "tu-resnet10t"),
        ("deeplabv3plus", "tu-resnet10t"),
    ],
)
def test_every_architecture_gives_a_mask_per_class(architecture, encoder):
    net = create_segmentation_network(architecture, encoder, num_classes=3, in_chans=1)
    out = net(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32)
    out.mean().backward()


@pytest.mark.parametrize("encoder", ["tu-resnet10t", "resnet18"])
def test_encoder_weights_from_a_file_offline(encoder, tmp_path):
    """A timm ImageNet-style state dict written here stands in for downloaded weights."""
    source = timm.create_model(encoder.removeprefix("tu-"), num_classes=1000)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    net = create_segmentation_network("unet", encoder, num_classes=3, in_chans=1, weights_path=path)
    model = net.encoder.model if encoder.startswith("tu-") else net.encoder
    name = "layer4.1.conv2.weight" if encoder == "resnet18" else "layer4.0.conv2.weight"
    assert torch.equal(model.state_dict()[name], source.state_dict()[name])
    # the RGB stem summed to one channel, as a download would be
    stem = next(k for k in source.state_dict() if k.endswith(".weight") and "conv" in k)
    assert model.state_dict()[stem].shape[1] == 1
    assert torch.allclose(model.state_dict()[stem][:, 0], source.state_dict()[stem].sum(dim=1))
    with pytest.raises(ConfigError, match="does not exist"):
        create_segmentation_network("unet", encoder, num_classes=3, weights_path=tmp_path / "x")


def test_bad_names_and_sizes_are_named_with_their_key():
    with pytest.raises(ConfigError, match="model.architecture='unett'.*did you mean unet"):
        create_segmentation_network("unett", "resnet18", num_classes=3)
    with pytest.raises(ConfigError, match="use model.encoder=tu-resnet10t"):
        create_segmentation_network("unet", "resnet10t", num_classes=3)
    with pytest.raises(ConfigError, match="data.image_size=48 is not a multiple of 32"):
        StrokeSegmenter("unet", "tu-resnet10t", LESIONS, image_size=48)
    with pytest.raises(ConfigError, match="needs lesion classes from a segmentation datamodule"):
        StrokeSegmenter("unet", "tu-resnet10t")


# A CLI training run: the tests using it are slow.
@pytest.fixture(scope="session")
def segmentation_run(phantom_dir, tmp_path_factory) -> Path:
    """`stroke-train experiment=lesion_segmentation_joint` on the tiny phantom, 2 epochs."""
    run_dir = tmp_path_factory.mktemp("segmentation") / "run"
    result = run_module(
        "stroke.cli.train",
        "experiment=lesion_segmentation_joint",
        *TINY,
        f"data.root={phantom_dir}",
        "trainer.max_epochs=2",
        "evaluation.n_boot=30",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_train_logs_both_heads_and_writes_the_segmentation_report(segmentation_run):
    summary = json.loads((segmentation_run / "metrics.json").read_text())
    metrics = summary["metrics"]
    for name in SEGMENTATION_METRICS:
        assert f"test/{name}" in metrics and f"val/{name}" in metrics
        assert all(f"test/{name}/{c}" in metrics for c in LESIONS)
    assert 0 <= metrics["test/dice"] <= 1 and "val/dice_best" in metrics
    assert {"test/accuracy", "test/f1", "test/roc_auc"} <= set(metrics)  # the joint head
    eval_dir = segmentation_run / "eval"
    for name in (
        "report.md",
        "metrics.json",
        "volumes.csv",
        "volumes.png",
        "worst_slices.png",
        "predictions_test.csv",
        "classification/report.md",
    ):
        assert (eval_dir / name).is_file(), name
    report = json.loads((eval_dir / "metrics.json").read_text())
    assert report["settings"]["resampling_unit"] == "patient"
    dice = report["image_level"]["metrics"]["dice"]
    assert dice["ci"][0] <= dice["value"] <= dice["ci"][1]
    # the report's Dice is the one Lightning's test loop logged for the same weights
    assert dice["value"] == pytest.approx(metrics["test/dice"], abs=1e-5)
    assert report["volumes"]["unit"] == "px"  # PNGs carry no spacing
    assert len(report["volumes"]["patients"]) == report["splits"]["test"]["n_patients"]
    text = (eval_dir / "report.md").read_text()
    assert "](volumes.png)" in text and "](worst_slices.png)" in text


@pytest.mark.slow
def test_checkpoint_is_plain_and_says_its_task(segmentation_run):
    ckpt = read_checkpoint(checkpoint(segmentation_run))  # weights_only=True
    record = ckpt[RECORD_KEY]
    assert record["task"] == "segmentation" and record["format_version"] == FORMAT_VERSION
    assert record["data"]["masks"]["lesion_classes"] == LESIONS
    assert record["preprocessing"]["image_size"] == 32
    assert "LesionSegmentationDataModule" not in ckpt  # the record holds its state, once
    segmenter = load_segmenter(checkpoint(segmentation_run))
    assert segmenter.lesion_classes == LESIONS and segmenter.joint
    assert segmenter.preprocessing.image_size == 32
    with pytest.raises(ConfigError, match="segmentation checkpoint, not a classifier"):
        load_classifier(checkpoint(segmentation_run))


def predict(run_dir: Path, inputs: Path, out: Path, *overrides: str):
    cfg = compose_config(
        "predict",
        [
            f"ckpt_path={checkpoint(run_dir)}",
            f"inputs={inputs}",
            f"paths.output_dir={out}",
            "num_workers=0",
            "progress=false",
            *overrides,
        ],
    )
    return run_prediction(cfg)


def phantom_inputs(phantom_dir: Path, folder: Path) -> Path:
    """Six phantom slices and one truncated PNG in a folder."""
    folder.mkdir(parents=True)
    for image in sorted(phantom_dir.glob("*/P*.png"))[:6]:
        (folder / image.name).write_bytes(image.read_bytes())
    whole = image.read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_predict_writes_a_mask_and_an_overlay_per_image_and_an_error_row(
    segmentation_run, phantom_dir, tmp_path
):
    inputs = phantom_inputs(phantom_dir, tmp_path / "inputs")
    csv_path, total, failures = predict(segmentation_run, inputs, tmp_path / "out")
    assert (total, failures) == (7, 1)
    rows = read_rows(csv_path)
    assert [r["path"] for r in rows] == [str(p) for p in sorted(inputs.iterdir())]
    failed = [r for r in rows if r["error"]]
    assert [Path(r["path"]).name for r in failed] == ["truncated.png"]
    assert "truncated" in failed[0]["error"] and failed[0]["mask"] == ""
    for row in rows:
        if row["error"]:
            continue
        mask = np.asarray(Image.open(row["mask"]))
        image = Image.open(row["path"])
        assert mask.shape == (image.height, image.width)  # at the input's own size
        assert set(np.unique(mask)) <= {0, 1, 2}
        assert int(row["lesion_area_px"]) == int((mask > 0).sum())
        assert row["lesion_area_mm2"] == ""  # a PNG has no pixel spacing
        assert Image.open(row["overlay"]).size == image.size
        probs = [float(row[f"prob_{c}"]) for c in ("normal", "hemorrhagic", "ischemic")]
        assert sum(probs) == pytest.approx(1, abs=1e-5)  # the joint head's probabilities
    assert len(list((tmp_path / "out" / "masks").iterdir())) == 6
    assert len(list((tmp_path / "out" / "overlays").iterdir())) == 6


@pytest.mark.slow
def test_onnx_export_gives_the_same_masks(segmentation_run, phantom_dir, tmp_path):
    onnx_path = tmp_path / "segmenter.onnx"
    cfg = compose_config(
        "export", [f"ckpt_path={checkpoint(segmentation_run)}", f"output_path={onnx_path}"]
    )
    output, difference = export_checkpoint(cfg)
    assert output == onnx_path and difference < 1e-4
    inputs = phantom_inputs(phantom_dir, tmp_path / "inputs")
    torch_csv, *_ = predict(segmentation_run, inputs, tmp_path / "torch")
    onnx_csv, *_ = predict(
        segmentation_run, inputs, tmp_path / "onnx", "backend=onnx", f"onnx_path={onnx_path}"
    )
    torch_rows, onnx_rows = read_rows(torch_csv), read_rows(onnx_csv)
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert a["error"] == b["error"] and a["lesion_area_px"] == b["lesion_area_px"]
        if not a["error"]:
            assert np.array_equal(
                np.asarray(Image.open(a["mask"])), np.asarray(Image.open(b["mask"]))
            )
            assert float(a["prob_normal"]) == pytest.approx(float(b["prob_normal"]), abs=1e-4)


@pytest.mark.slow
def test_stroke_eval_on_a_segmentation_checkpoint(segmentation_run, tmp_path, monkeypatch):
    # no command line: another test's Hydra config must not pass for this one's overrides
    monkeypatch.setattr("stroke.cli.eval._cli_overrides", lambda: [])
    cfg = compose_config(
        "eval",
        [
            f"ckpt_path={checkpoint(segmentation_run)}",
            f"paths.output_dir={tmp_path}",
            "evaluation.n_boot=20",
            "evaluation.gallery_size=4",
        ],
    )
    result = evaluate_checkpoint(cfg)
    assert (
        result["task"] == "segmentation"
        and "training run's data config" in result["context"]["data"]
    )
    with (segmentation_run / "splits.csv").open() as fh:
        test_paths = sorted(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    assert sorted(r["path"] for r in read_rows(tmp_path / "predictions_test.csv")) == test_paths
    assert (tmp_path / "worst_slices.png").is_file() and (tmp_path / "classification").is_dir()


def test_a_classifier_on_segmentation_data_is_refused_with_the_keys(phantom_dir, tmp_path):
    from conftest import compose_train

    from stroke.build import build_datamodule, build_model

    cfg = compose_train(
        [
            "experiment=lesion_segmentation",
            "model=cnn_small",
            f"data.root={phantom_dir}",
            "data.image_size=32",
            "data.num_workers=0",
        ],
        tmp_path,
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    with pytest.raises(ConfigError, match="cannot be built from data"):
        build_model(cfg, datamodule)


@pytest.mark.slow
def test_a_segmentation_fold_sweep_in_stroke_runs_and_stroke_cv(phantom_dir, tmp_path):
    sweep_dir = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "stroke.cli.train",
        "-m",
        "experiment=lesion_segmentation",
        *TINY,
        f"data.root={phantom_dir}",
        "data.folds=3",
        "data.fold=0,1",
        "evaluation.n_boot=10",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_module("stroke.cli.runs", f"path={sweep_dir}", "format=csv")
    assert runs.returncode == 0, runs.stderr
    rows = list(csv.DictReader(io.StringIO(runs.stdout)))
    assert len(rows) == 2 and {"test/dice", "test/iou", "best val/dice"} <= set(rows[0])
    for row in rows:
        metrics = json.loads((sweep_dir / row["run"] / "metrics.json").read_text())["metrics"]
        assert float(row["test/dice"]) == metrics["test/dice"]
    summary = json.loads((sweep_dir / "cv_summary.json").read_text())
    assert "test/dice" in summary["groups"][0]["metrics"]
    pooled = summary["groups"][0]["pooled_out_of_fold"]  # classifiers only: says why not
    assert "no class probabilities" in pooled["skipped"]


class BrightIsLesion:
    """A stand-in segmenter: class 1 wherever the (normalised) input is bright."""

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        bright = (batch[:, :1] > 1.0).astype(np.float32) * 20.0
        return np.concatenate([np.zeros_like(bright), bright, np.zeros_like(bright)], 1), None


def test_a_nifti_volume_gets_a_mask_volume_of_its_geometry(tmp_path):
    import nibabel as nib
    from omegaconf import OmegaConf

    from stroke.data.preprocessing import Preprocessing
    from stroke.tasks.segmentation.predict import (
        SegmenterDescription,
        _OutputWriter,
        predict_volume,
    )

    volume = np.full((16, 12, 5), -1000, dtype=np.int16)
    volume[2:-2, 2:-2] = 30
    volume[4:9, 3:7, 1:4] = 75  # hyperdense: bright in the brain window
    affine = np.array([[-0.5, 0, 0, 0], [0, 0, 0.8, 0], [0, 5.0, 0, 0], [0, 0, 0, 1]])
    path = tmp_path / "scan.nii.gz"  # voxel axes (R->L, S, A): not the displayed order
    nib.save(nib.Nifti1Image(volume.transpose(0, 2, 1), affine), path)
    preprocessing = Preprocessing(32, 1, dicom_windows=({"width": 80.0, "level": 40.0},))
    result = predict_volume(path, preprocessing, BrightIsLesion(), 4, flip_tta=False)
    assert result.mask.shape == (16, 5, 12)
    assert np.array_equal(result.mask > 0, volume.transpose(0, 2, 1) == 75)
    assert result.voxel_ml == pytest.approx(0.5 * 0.8 * 5.0 / 1000)

    cfg = OmegaConf.create(
        {
            "output_csv": str(tmp_path / "p.csv"),
            "mask_dir": str(tmp_path / "m"),
            "overlay_dir": str(tmp_path / "o"),
        }
    )
    described = SegmenterDescription(LESIONS, ["normal", "stroke"], False, preprocessing)
    with _OutputWriter(cfg, described) as writer:
        writer.write_volume(result)
    (row,) = read_rows(tmp_path / "p.csv")
    assert int(row["lesion_area_px"]) == 5 * 4 * 3
    assert float(row["lesion_volume_ml"]) == pytest.approx(60 * 0.002, abs=1e-3)
    written = nib.load(row["mask"])
    assert np.allclose(written.affine, affine) and np.array_equal(
        written.get_fdata() > 0, result.mask > 0
    )


def test_a_dicom_input_gets_its_lesion_area_in_mm2(tmp_path):
    from dicom_factory import ct_dataset, save
    from omegaconf import OmegaConf

    from stroke.data.preprocessing import Preprocessing
    from stroke.tasks.segmentation.predict import SegmenterDescription, _OutputWriter, predict_masks

    hu = np.full((40, 50), 30.0)
    hu[10:20, 5:15] = 75.0  # 100 pixels of hyperdense lesion
    ds = ct_dataset(hu)
    ds.PixelSpacing = [0.5, 0.4]
    path = save(ds, tmp_path / "slice.dcm")
    preprocessing = Preprocessing(32, 1, dicom_windows=({"width": 80.0, "level": 40.0},))
    (results,) = list(predict_masks([path], preprocessing, BrightIsLesion(), progress=False))
    cfg = OmegaConf.create(
        {
            "output_csv": str(tmp_path / "p.csv"),
            "mask_dir": str(tmp_path / "m"),
            "overlay_dir": str(tmp_path / "o"),
        }
    )
    described = SegmenterDescription(LESIONS, ["normal", "stroke"], False, preprocessing)
    with _OutputWriter(cfg, described) as writer:
        writer.write(results[0])
    (row,) = read_rows(tmp_path / "p.csv")
    assert row["error"] == "" and row["lesion_class"] == "hemorrhage"
    # back at 40x50 pixels (the 0.64x letterbox and back blur the edge by a pixel or so)
    assert int(row["lesion_area_px"]) == pytest.approx(100, abs=25)
    assert float(row["lesion_area_mm2"]) == pytest.approx(int(row["lesion_area_px"]) * 0.2)


def with_lesion_bias(ckpt: Path, out: Path, shift: float) -> Path:
    """The checkpoint with its segmentation head's lesion logits raised by `shift`."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    key = "net.segmentation_head.0.bias"
    state["state_dict"][key] = state["state_dict"][key].clone()
    state["state_dict"][key][1:] += shift
    torch.save(state, out)
    return out


@pytest.mark.slow
def test_stroke_serve_shows_the_lesion_area_stroke_predict_writes(
    segmentation_run, trained_run, phantom_dir, tmp_path
):
    from fastapi.testclient import TestClient

    from stroke.serve import ServedModel, ServeSettings, create_app
    from stroke.tasks.segmentation.serve import load_served_segmenter as serve_segmenter

    inputs = phantom_inputs(phantom_dir, tmp_path / "inputs")
    (inputs / "truncated.png").unlink()
    classifier = Path(json.loads((trained_run / "metrics.json").read_text())["best_model_path"])
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for shift, name in ((0.0, "as_trained.ckpt"), (50.0, "all_lesion.ckpt")):
        seg_ckpt = with_lesion_bias(checkpoint(segmentation_run), tmp_path / name, shift)
        out = tmp_path / f"out_{name}"
        cfg = compose_config(
            "predict",
            [f"ckpt_path={seg_ckpt}", f"inputs={inputs}", f"paths.output_dir={out}"]
            + ["num_workers=0", "progress=false"],
        )
        csv_path, _, _ = run_prediction(cfg)
        expected = {Path(r["path"]).name: int(r["lesion_area_px"]) for r in read_rows(csv_path)}
        segmenter = serve_segmenter(seg_ckpt)
        app = create_app(
            ServedModel.load(classifier), ServeSettings(tmp_dir=str(uploads)), segmenter
        )
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(inputs.iterdir())]
        with TestClient(app) as client:
            assert name in client.get("/api/model").json()["segmenter"]
            body = client.post("/api/predict", files=files).json()
        served = {r["name"]: r["lesion"] for r in body["results"]}
        assert {k: v["area_px"] for k, v in served.items()} == expected
        assert all(v["area_mm2"] is None for v in served.values())  # PNGs carry no spacing
        if shift:  # every pixel a lesion: the image's own pixels, one outline round the square
            sizes = {p.name: Image.open(p).size for p in inputs.iterdir()}
            assert expected == {k: w * h for k, (w, h) in sizes.items()}
            assert all(len(v["outline"]) == 1 for v in served.values())
    from stroke.cli.serve import served

    with pytest.raises(
        ConfigError, match="seg_ckpt_path=.*a classification checkpoint; .*ckpt_path="
    ):
        served(classifier, "seg_ckpt_path")
