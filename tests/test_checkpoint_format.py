"""The checkpoint format's one home (stroke/checkpoint/) and the task registry: what training
writes, that a checkpoint of the format before it (main at 6c8ce0b) still works through every
command, and that a new task plugs in through the registry alone."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import run_main
from conftest import run_module
from fastapi.testclient import TestClient

from stroke.checkpoint import FORMAT_VERSION, RECORD_KEY, CheckpointRecord, read_checkpoint
from stroke.cli import predict as predict_cli
from stroke.errors import CheckpointError
from stroke.serve import ServedModel, ServeSettings, create_app
from stroke.tasks.classification.checkpoint import load_classifier
from stroke.tasks.registry import TaskParts, get_task, register_task, task_of, unregister_task

#: 6c8ce0b's module paths in a run's composed config (classes that moved since)
OLD_TARGETS = {
    "stroke.tasks.classification.module.": "stroke.module.",
    "stroke.tasks.segmentation.": "stroke.segmentation.",
}


def write_version_0(checkpoint: Path, out: Path) -> Path:
    """`checkpoint` rewritten in the layout main wrote up to 6c8ce0b: no `stroke` record; the
    preprocessing, the classes and a segmenter's mask record in the datamodule's state under
    its class name; a segmenter's task in its hyper-parameters."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    record = CheckpointRecord.from_dict(content.pop(RECORD_KEY))
    hparams = content["hyper_parameters"]
    hparams["in_chans"] = hparams.pop("input_channels")  # the network's, as versions 0-1 said
    state = {**record.preprocessing, **record.data, "class_names": record.class_names}
    if record.task == "segmentation":
        content["hyper_parameters"]["task"] = "segmentation"
        content["LesionSegmentationDataModule"] = {**state, "task": "segmentation"}
    else:
        content["StrokeDataModule"] = state
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, out)
    return out


def write_version_1(checkpoint: Path, out: Path) -> Path:
    """`checkpoint` as main wrote it on 2026-12-03: the record at format version 1, and the
    network's input channels under the hyper-parameter `in_chans`."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content[RECORD_KEY]["format_version"] = 1
    hparams = content["hyper_parameters"]
    hparams["in_chans"] = hparams.pop("input_channels")
    torch.save(content, out)
    return out


def version_0_run(run_dir: Path, out: Path) -> Path:
    """A copy of a run directory as 6c8ce0b left it: old checkpoints, old `_target_`s."""
    shutil.copytree(run_dir, out)
    for ckpt in (out / "checkpoints").glob("*.ckpt"):
        write_version_0(ckpt, ckpt)
    config = out / ".hydra" / "config.yaml"
    text = config.read_text()
    for new, old in OLD_TARGETS.items():
        text = text.replace(new, old)
    config.write_text(text)
    return out


def test_a_version_1_checkpoint_loads_with_its_channels_under_the_new_name(trained_run, tmp_path):
    """Versions 0 and 1 said `in_chans` for the network's channels; the loaded classifier calls
    them input_channels and gives the same outputs as the current file."""
    new = trained_run / "checkpoints" / "last.ckpt"
    old = write_version_1(new, tmp_path / "v1.ckpt")
    assert "input_channels" not in torch.load(old, weights_only=True)["hyper_parameters"]
    before, after = load_classifier(old), load_classifier(new)
    assert before.input_channels == after.input_channels == 1
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(before.net(images), after.net(images))


def probabilities(csv_path: Path) -> dict[str, list[float]]:
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {
        Path(r["path"]).name: [float(v) for k, v in r.items() if k.startswith("prob_")]
        for r in rows
    }


def test_training_writes_one_record_with_task_classes_and_preprocessing(trained_run):
    content = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    record = content[RECORD_KEY]
    assert record["format_version"] == FORMAT_VERSION and record["task"] == "classification"
    assert record["class_names"] == ["normal", "hemorrhagic", "ischemic"]
    assert record["preprocessing"]["image_size"] == 32
    assert record["preprocessing"]["in_chans"] == 1
    assert record["provenance"]["run_dir"] == str(trained_run)
    # the datamodule's state lives in the record only, not a second time under its class name
    assert "StrokeDataModule" not in content


@pytest.mark.slow
def test_a_version_0_checkpoint_works_through_every_command(trained_run, phantom_dir, tmp_path):
    old_run = version_0_run(trained_run, tmp_path / "old_run")
    old, new = old_run / "checkpoints" / "last.ckpt", trained_run / "checkpoints" / "last.ckpt"
    assert RECORD_KEY not in torch.load(old, weights_only=True)
    assert read_checkpoint(old)[RECORD_KEY]["format_version"] == 0
    inputs = sorted((phantom_dir / "ischemic").glob("*.png"))[:4]

    predicted = {}
    for name, ckpt in (("old", old), ("new", new)):
        out = tmp_path / f"{name}.csv"
        result = run_module(
            "stroke.cli.predict",
            f"ckpt_path={ckpt}",
            f"inputs=[{','.join(map(str, inputs))}]",
            f"output_csv={out}",
            "num_workers=0",
            f"hydra.run.dir={tmp_path / name}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        predicted[name] = probabilities(out)
    assert predicted["old"].keys() == predicted["new"].keys() and len(predicted["old"]) == 4
    for key, probs in predicted["old"].items():
        assert probs == pytest.approx(predicted["new"][key], abs=1e-6)

    result = run_module(
        "stroke.cli.eval",
        f"ckpt_path={old}",
        "data.num_workers=0",
        "evaluation.n_boot=20",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    # the old run config's `stroke.module.StrokeClassifier` still names the data it ran on
    assert "training run's data config" in (tmp_path / "eval" / "metrics.json").read_text()

    onnx = tmp_path / "old.onnx"
    result = run_module("stroke.cli.export", f"ckpt_path={old}", f"output_path={onnx}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert onnx.stat().st_size > 0

    served = ServedModel.load(old)
    assert served.classes == ["normal", "hemorrhagic", "ischemic"]
    settings = ServeSettings(tmp_dir=str(tmp_path / "uploads"))
    (tmp_path / "uploads").mkdir()
    with TestClient(create_app(served, settings)) as client:
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in inputs]
        response = client.post("/api/predict", files=files)
    assert response.status_code == 200, response.text
    for item in response.json()["results"]:
        probs = [item["probabilities"][c] for c in served.classes]
        assert probs == pytest.approx(predicted["new"][item["name"]], abs=1e-4)


def test_a_newer_format_is_refused_in_one_line(trained_run, tmp_path):
    content = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    content[RECORD_KEY]["format_version"] = 99
    torch.save(content, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="format version 99.*upgrade stroke"):
        read_checkpoint(tmp_path / "future.ckpt")


class ToyModel:
    """A 'model' that calls every image class 0 (the toy task's trained model)."""

    def __init__(self, path: Path, classes: list[str]):
        self.path, self.class_names = path, classes


def toy_predict(cfg) -> tuple[Path, int, int]:
    """The toy task's prediction writer: one row per input, the first class."""
    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = get_task("toy").load(Path(cfg.ckpt_path), checkpoint)
    inputs = sorted(Path(cfg.inputs).glob("*.png"))
    out = Path(cfg.output_csv)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "predicted_class"])
        writer.writerows([str(p), model.class_names[0]] for p in inputs)
    return out, len(inputs), 0


@pytest.fixture
def toy_task():
    parts = register_task(
        TaskParts(
            name="toy",
            summary="a test's task: the first class for every image",
            module=ToyModel,
            load=lambda path, checkpoint: ToyModel(path, checkpoint[RECORD_KEY]["class_names"]),
            evaluate=lambda *args: {},
            predict=toy_predict,
            onnx_outputs=lambda model: ["toy"],
            serve=lambda path, device=None: ToyModel(path, []),
            serve_key="ckpt_path",
        )
    )
    yield parts
    unregister_task("toy")


def toy_checkpoint(path: Path) -> Path:
    record = CheckpointRecord(task="toy", class_names=["calm", "storm"])
    torch.save({"state_dict": {}, "hyper_parameters": {}, RECORD_KEY: record.to_dict()}, path)
    return path


def test_a_new_task_plugs_in_through_the_registry_alone(toy_task, tmp_path, capsys):
    ckpt = toy_checkpoint(tmp_path / "toy.ckpt")
    assert task_of(read_checkpoint(ckpt), ckpt) is toy_task
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        np.save(images / f"x{i}.npy", np.zeros(2))  # not read: the toy names files only
        (images / f"x{i}.png").write_bytes(b"")
    out = tmp_path / "toy.csv"
    code, _, err = run_main(
        predict_cli.main,
        f"ckpt_path={ckpt}",
        f"inputs={images}",
        f"output_csv={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        capsys=capsys,
    )
    assert code == 0, err
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["predicted_class"] for r in rows] == ["calm"] * 3


def test_a_checkpoint_of_an_unknown_task_names_the_known_ones(tmp_path, capsys):
    ckpt = toy_checkpoint(tmp_path / "toy.ckpt")  # "toy" is not registered here
    code, _, err = run_main(
        predict_cli.main,
        f"ckpt_path={ckpt}",
        f"inputs={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        capsys=capsys,
    )
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "trained for task 'toy'" in lines[0] and "classification" in lines[0]


class Crafted:
    """A class a crafted checkpoint asks to unpickle (pickle would run its code)."""


def test_a_crafted_checkpoint_is_refused_in_our_one_line_only(tmp_path):
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Crafted()}, ckpt)
    result = run_module(
        "stroke.cli.predict",
        f"ckpt_path={ckpt}",
        f"inputs={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"PYTHONWARNINGS": "default"},  # torch's pickle warning would show, if raised
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot be loaded safely" in lines[0] and "Crafted" in lines[0]
    assert "UserWarning" not in result.stderr and "weights_only=False" not in result.stderr


@pytest.mark.parametrize("zipped", [True, False])
def test_a_lazy_read_gives_the_same_checkpoint(tmp_path, zipped):
    """The task check reads checkpoints lazily (tensors memory-mapped); the legacy non-zip
    format cannot be mapped and is read whole instead."""
    path = tmp_path / "model.ckpt"
    hparams = {"backbone": {"name": "cnn_small"}, "in_chans": 1}
    content = {"state_dict": {"w": torch.arange(4.0)}, "hyper_parameters": hparams}
    torch.save(content, path, _use_new_zipfile_serialization=zipped)
    lazy, whole = read_checkpoint(path, lazy=True), read_checkpoint(path)
    assert torch.equal(lazy["state_dict"]["w"], whole["state_dict"]["w"])
    upgraded = {"backbone": {"name": "cnn_small"}, "input_channels": 1}
    assert lazy["hyper_parameters"] == whole["hyper_parameters"] == upgraded
