"""3-D lesion segmentation (stroke/tasks/segmentation_3d): training through the real CLI on
tiny volumes, predictions on the input's own geometry, sliding windows, fold ensembles and
the post-processing chosen on validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from stroke.data.volume_plan import read_plan
from stroke.tasks.segmentation_3d.checkpoint import load_volume_segmenter
from stroke.tasks.segmentation_3d.inference import VolumePredictor
from stroke.tasks.segmentation_3d.networks import window_logits
from stroke.tasks.segmentation_3d.report import choose_min_lesion_ml
from tests.conftest import run_module

#: a 3-D run small enough for seconds on 2 cores: 16 x 16 x 8 patches, 3 levels of 4-16 channels
TINY_3D = [
    "experiment=lesion_segmentation_3d",
    "data.num_workers=0",
    "data.plan_overrides.patch_size=[16,16,8]",
    "data.plan_overrides.strides=[[1,1,1],[2,2,2],[2,2,2]]",
    "data.plan_overrides.kernel_sizes=[[3,3,3],[3,3,3],[3,3,3]]",
    "data.plan_overrides.channels=[4,8,16]",
    "data.batch_size=4",
    "model.channels=[4,8,16]",
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "+trainer.limit_train_batches=2",
    "evaluation.n_boot=20",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
]


@pytest.fixture(scope="module")
def planned(volume_root, tmp_path_factory) -> Path:
    """The plan stroke-plan writes for the scans' training split."""
    out = tmp_path_factory.mktemp("plan") / "plan.yaml"
    args = [
        "stroke.cli.plan",
        f"data.root={volume_root}",
        f"out={out}",
        "data.memory_budget_mb=512",
    ]
    result = run_module(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"written to {out}" in result.stdout
    again = run_module(*args)  # a written plan is not replaced without overwrite=true
    assert again.returncode != 0 and "exists" in again.stderr.strip().splitlines()[-1]
    return out


@pytest.fixture(scope="module")
def volume_run(volume_root, planned, tmp_path_factory) -> Path:
    """A tiny run trained with stroke-plan's plan and the test's overrides on top."""
    run_dir = tmp_path_factory.mktemp("run3d") / "run"
    result = run_module(
        "stroke.cli.train", *TINY_3D, f"data.root={volume_root}", f"data.plan={planned}",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_stroke_plan_measures_the_training_scans(planned, volume_run):
    plan = read_plan(planned)
    assert plan.spacing == [2.0, 2.0, 4.0]  # every scan's own spacing (LPS ones included)
    assert plan.median_shape == [24, 24, 12]
    assert plan.intensity["scheme"] == "ct" and plan.memory_budget_mb == 512
    assert plan.lesion_classes == [1, 2]
    # the run trained with that plan, the overrides replacing only the keys they name
    used = read_plan(volume_run / "plan.yaml")
    assert used.spacing == plan.spacing and used.intensity == plan.intensity
    assert used.patch_size == [16, 16, 8] and used.channels == [4, 8, 16]


def test_training_writes_plan_splits_report_and_a_checkpoint(volume_run):
    assert (volume_run / "plan.yaml").is_file()
    with (volume_run / "splits.csv").open() as f:
        rows = list(csv.DictReader(f))
    # a patient's follow-up scan is in the same split as the first
    split_of = {}
    for row in rows:
        patient = Path(row["path"]).name.split("_")[0]
        assert split_of.setdefault(patient, row["split"]) == row["split"]
    metrics = json.loads((volume_run / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "segmentation_3d"
    for key in ("dice/any", "lesion_f1/any", "absolute_volume_difference_ml/any"):
        entry = metrics["volume_level"][key]
        assert set(entry) == {"value", "ci"}
    assert (volume_run / "eval" / "report.md").read_text().count("| hemorrhage |") == 2
    checkpoint = torch.load(volume_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["stroke"]["task"] == "segmentation_3d"
    assert checkpoint["stroke"]["data"]["volume_plan"]["patch_size"] == [16, 16, 8]


def test_predict_writes_label_volumes_on_the_inputs_geometry(volume_run, volume_root, tmp_path):
    inputs = sorted((volume_root / "images").glob("*.nii.gz"))[:3]  # p0000_s0 is stored LPS
    result = run_module(
        "stroke.cli.predict",
        f"ckpt_path={volume_run / 'checkpoints' / 'last.ckpt'}",
        f"inputs=[{','.join(map(str, inputs))}]",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(not row["error"] for row in rows)
    for source, row in zip(inputs, rows, strict=True):
        scan, mask = nib.load(source), nib.load(row["mask"])
        assert mask.shape == scan.shape
        np.testing.assert_allclose(mask.affine, scan.affine, atol=1e-4)
        voxel_ml = abs(np.linalg.det(scan.affine[:3, :3])) / 1000
        labels = np.asarray(mask.dataobj)
        assert float(row["hemorrhage_ml"]) == pytest.approx(
            (labels == 1).sum() * voxel_ml, abs=1e-3
        )


def test_sliding_window_equals_whole_volume_inference_when_the_volume_fits():
    from monai.networks.nets import DynUNet

    net = DynUNet(3, 1, 2, [[3, 3, 3]] * 3, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], [[2, 2, 2]] * 2,
                  filters=[4, 8, 16]).eval()  # fmt: skip
    volume = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        whole = net(volume)
        windowed = window_logits(net, volume, (16, 16, 8), overlap=0.5, batch=2)
    torch.testing.assert_close(windowed, whole, rtol=1e-4, atol=1e-5)


def test_min_lesion_size_is_chosen_on_validation_scans():
    from stroke.tasks.segmentation_3d.inference import VolumeResult

    true = np.zeros((20, 20, 20), np.uint8)
    true[2:8, 2:8, 2:8] = 1
    pred = true.copy()
    pred[15, 15, 15] = 1  # a one-voxel false positive, 1 mm³ = 0.001 mL
    affine = np.diag([10.0, 10.0, 10.0, 1.0])  # 1 mL voxels: the speck is 1 mL
    result = VolumeResult(Path("x"), pred, affine, None, ["lesion"])
    chosen, tried = choose_min_lesion_ml([(None, result, true)], ["lesion"])
    assert chosen > 1.0  # removes the speck, keeps the 216 mL lesion
    assert tried["0.0"] < tried[str(chosen)] == 1.0
    assert choose_min_lesion_ml([], ["lesion"]) == (0.0, {})


def test_stroke_eval_scores_the_runs_test_scans_again(volume_run, tmp_path):
    trained = json.loads((volume_run / "eval" / "metrics.json").read_text())
    # the checkpoint the run's report scored (the best epoch, not always the last)
    result = run_module(
        "stroke.cli.eval",
        f"ckpt_path={trained['context']['checkpoint']}",
        "evaluation.n_boot=20",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lesion F1" in result.stdout
    again = json.loads((tmp_path / "metrics.json").read_text())
    # the same split and plan from the checkpoint alone: the same test Dice
    key = "dice/any"
    assert again["volume_level"][key]["value"] == pytest.approx(
        trained["volume_level"][key]["value"], abs=1e-6
    )


def test_a_fold_ensemble_averages_its_members_probabilities(volume_run, volume_root, tmp_path):
    first = load_volume_segmenter(volume_run / "checkpoints" / "last.ckpt")
    # a second member: the same network with other weights
    checkpoint = torch.load(volume_run / "checkpoints" / "last.ckpt", weights_only=True)
    generator = torch.Generator().manual_seed(3)
    for key, value in checkpoint["state_dict"].items():
        if value.is_floating_point():
            checkpoint["state_dict"][key] = value + 0.05 * torch.randn(
                value.shape, generator=generator
            )
    other_path = tmp_path / "other.ckpt"
    torch.save(checkpoint, other_path)
    second = load_volume_segmenter(other_path)
    scan = sorted((volume_root / "images").glob("*.nii.gz"))[1]

    def probs(*members):
        predictor = VolumePredictor([m.net for m in members], first.plan, first.lesion_classes)
        return predictor.probabilities(scan)[0]

    a, b, both = probs(first), probs(second), probs(first, second)
    assert not np.allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(both, (a + b) / 2, atol=1e-5)
    # and through stroke-predict: two checkpoints are one model
    result = run_module(
        "stroke.cli.predict",
        f"ckpt_path=[{volume_run / 'checkpoints' / 'last.ckpt'},{other_path}]",
        f"inputs=[{scan}]",
        f"hydra.run.dir={tmp_path / 'predict'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "predict" / "predictions.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    labels = np.asarray(nib.load(row["mask"]).dataobj)
    np.testing.assert_array_equal(labels, both.argmax(axis=0))


def test_predict_on_a_dicom_series_writes_the_label_volume_on_the_series_grid(volume_run, tmp_path):
    phantom = tmp_path / "phantom"
    made = run_module(
        "stroke.cli.synth", "layout=volumes", "n_patients=2", "image_size=32", "slices=12",
        f"out_dir={phantom}",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    with (phantom / "cases.csv").open() as f:
        cases = list(csv.DictReader(f))
    series = [phantom / row["dicom_dir"] for row in cases]
    result = run_module(
        "stroke.cli.predict",
        f"ckpt_path={volume_run / 'checkpoints' / 'last.ckpt'}",
        f"inputs=[{','.join(map(str, series))}]",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "out" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["case"] for row in rows] == [row["case"] for row in cases]
    for case, row in zip(cases, rows, strict=True):
        assert not row["error"]
        # the series' own grid: the same voxels in world space as the case's NIfTI copy
        twin = nib.as_closest_canonical(nib.load(phantom / case["path"]))
        mask = nib.as_closest_canonical(nib.load(row["mask"]))
        assert mask.shape == twin.shape
        np.testing.assert_allclose(mask.affine, twin.affine, atol=1e-3)
        voxel_ml = abs(np.linalg.det(mask.affine[:3, :3])) / 1000
        labels = np.asarray(mask.dataobj)
        assert float(row["infarct_ml"]) == pytest.approx((labels == 2).sum() * voxel_ml, abs=1e-3)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.cache=ram", "data.cache='ram'"),
        ("data.memory_budget_mb=0", "data.memory_budget_mb=0"),
    ],
)
def test_a_bad_3d_data_key_is_one_line_before_any_scan_is_read(override, named, tmp_path):
    result = run_module(
        "stroke.cli.train", *TINY_3D, f"data.root={tmp_path}", override,
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and named in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
