"""The series model (stage 2 of the subtype task): out-of-fold features only, padding that
changes nothing, one checkpoint of both stages giving the same outputs after a save/load,
and (slow) the two commands end to end on the series phantom."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_module

from stroke.checkpoint import CheckpointRecord, read_checkpoint
from stroke.checkpoint.format import RECORD_KEY
from stroke.data.preprocessing import Preprocessing
from stroke.errors import DatasetError
from stroke.tasks.multilabel import MultiLabelClassifier, load_multilabel
from stroke.tasks.multilabel.features import (
    FoldModel,
    SeriesFeatures,
    check_out_of_fold,
    slice_features,
)
from stroke.tasks.multilabel.sequence import SeriesSequenceNet, pad_series
from stroke.tasks.multilabel.series import (
    fit_series_model,
    load_series,
    series_checkpoint,
    split_by_patient,
)
from stroke.tasks.registry import get_task

LABELS = ["a", "b", "any"]


def toy_series(n: int = 12, width: int = 5, seed: int = 0) -> list[SeriesFeatures]:
    """Series of 4-9 slices whose label `a` runs over a middle stretch."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n):
        length = int(rng.integers(4, 10))
        targets = np.zeros((length, len(LABELS)), dtype=np.float32)
        if i % 2:
            targets[1 : length - 1, 0] = targets[1 : length - 1, 2] = 1
        logits = (targets * 2 - 1 + rng.normal(0, 1, targets.shape)).astype(np.float32)
        series.append(
            SeriesFeatures(
                series_id=f"S{i}", patient_id=f"P{i}",
                paths=[f"/data/p{i}_s{j}.dcm" for j in range(length)],
                features=rng.normal(0, 1, (length, width)).astype(np.float32),
                logits=logits, targets=targets, fold=i % 2,
            )
        )  # fmt: skip
    return series


def test_outputs_have_a_row_per_slice_and_one_per_series():
    net = SeriesSequenceNet(in_features=8, num_labels=3).eval()
    x, mask, _ = pad_series([np.ones((5, 8)), np.ones((3, 8))])
    slices, series = net(x, mask)
    assert slices.shape == (2, 5, 3) and series.shape == (2, 3)
    # untrained, the heads add nothing: stage 1's logits (the last inputs) come through
    assert torch.allclose(slices[1, :3], x[1, :3, -3:])


def test_a_series_outputs_do_not_depend_on_the_others_in_its_batch():
    torch.manual_seed(0)
    net = SeriesSequenceNet(in_features=6, num_labels=3, conv=True).eval()
    for head in (net.slice_head, net.series_head):  # trained-looking heads
        torch.nn.init.normal_(head.weight)
    short = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    long = np.random.default_rng(2).normal(size=(11, 6)).astype(np.float32)
    alone = net(*pad_series([short])[:2])
    together = net(*pad_series([long, short])[:2])
    assert torch.allclose(alone[0][0], together[0][1, :4], atol=1e-5)
    assert torch.allclose(alone[1][0], together[1][1], atol=1e-5)


def test_a_slice_a_fold_trained_on_never_reaches_stage_2():
    series = toy_series(4)
    folds = [FoldModel(Path(f"fold{k}"), k, None, frozenset({"/data/other.dcm"})) for k in (0, 1)]
    check_out_of_fold(series, folds)  # out of fold: passes
    leaked = series[1].paths[2]  # a slice of fold 1's series, in fold 1's training split
    folds[1] = FoldModel(Path("fold1"), 1, None, frozenset({leaked}))
    with pytest.raises(DatasetError, match="is a training slice of fold 1") as err:
        check_out_of_fold(series, folds)
    assert leaked in str(err.value) and "\n" not in str(err.value)


def test_stage_2_features_pass_the_check_before_anything_is_fitted(monkeypatch):
    """out_of_fold_features, stroke-series' only source of stage-2 inputs, refuses a fold
    whose test split gives a slice it trained on (a wrong split rebuilt, a moved file)."""
    from stroke.tasks.multilabel import features

    series = toy_series(4)
    monkeypatch.setattr(features, "_fold_datamodule", lambda fold, overrides: None)

    def fold_series(model, datamodule, split, device, fold):
        return [s for s in series if s.fold == fold]

    monkeypatch.setattr(features, "split_series", fold_series)
    folds = [FoldModel(Path(f"fold{k}"), k, None, frozenset()) for k in (0, 1)]
    assert len(features.out_of_fold_features(folds)) == 4
    folds[0] = FoldModel(Path("fold0"), 0, None, frozenset({series[0].paths[0]}))
    with pytest.raises(DatasetError, match="training slice of fold 0"):
        features.out_of_fold_features(folds)


def test_stage_2_validation_patients_are_not_its_training_patients():
    train, val = split_by_patient(toy_series(20), 0.25, seed=0)
    assert len(val) == 5 and not {s.patient_id for s in train} & {s.patient_id for s in val}


def stage1_checkpoint(path: Path, seed: int) -> Path:
    """A tiny untrained stage-1 checkpoint of the multi-label task, as stroke-train writes."""
    torch.manual_seed(seed)
    module = MultiLabelClassifier(
        backbone={"name": "cnn_small"}, num_classes=3, input_channels=1, class_names=LABELS,
        label_counts={"any_label": "any"}, loss={"log_loss_weights": {"any": 2}},
    )  # fmt: skip
    record = CheckpointRecord(
        task="multilabel", class_names=LABELS,
        preprocessing=Preprocessing(image_size=32, in_chans=1).record(),
    )  # fmt: skip
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                RECORD_KEY: record.to_dict()}, path)  # fmt: skip
    return path


def test_both_stages_give_the_same_outputs_after_a_save_and_load(tmp_path):
    folds = []
    for k in (0, 1):
        member = load_multilabel(stage1_checkpoint(tmp_path / f"fold{k}.ckpt", seed=k))
        folds.append(FoldModel(tmp_path, k, member, frozenset()))
    images = torch.rand(7, 1, 32, 32)
    width = slice_features(folds[0].model.net, images)[0].shape[1]
    series = toy_series(8, width=width)
    train, val = split_by_patient(series, 0.25, seed=0)
    model = fit_series_model(train, val, LABELS, {"epochs": 2, "hidden": 8}, {"any": 2})
    path = tmp_path / "series.ckpt"
    torch.save(series_checkpoint(model, folds, {"run_dir": str(tmp_path)}), path)
    assert read_checkpoint(path)[RECORD_KEY]["task"] == "multilabel_series"  # weights_only
    loaded = load_series(path)
    assert len(loaded.members) == 2 and loaded.preprocessing.image_size == 32
    per_member = [[loaded.member_series(m, images, "cpu")] for m in loaded.members]
    slices, whole = loaded.read(per_member)
    # the same by hand, from the in-memory stage 2 and the stage-1 networks
    expected_slices, expected_series = [], []
    for fold in folds:
        features, logits = slice_features(fold.model.net.eval(), images)
        x = torch.cat([features, logits], dim=1)[None]
        with torch.no_grad():
            out = model.net.eval()(x, torch.ones(1, len(images), dtype=torch.bool))
        expected_slices.append(torch.sigmoid(out[0][0]).numpy())
        expected_series.append(torch.sigmoid(out[1][0]).numpy())
    assert slices[0].shape == (7, 3) and whole.shape == (1, 3)
    np.testing.assert_allclose(slices[0], np.mean(expected_slices, axis=0), atol=1e-5)
    np.testing.assert_allclose(whole[0], np.mean(expected_series, axis=0), atol=1e-5)
    assert get_task("multilabel_series").load is load_series


def test_stage_2_refuses_a_stage_1_folder_with_a_fold_missing(tmp_path, capsys):
    for fold in (0, 2):
        run = tmp_path / "stage1" / str(fold)
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(f'{{"fold": {fold}, "folds": 3, "metrics": {{}}}}')
    result = run_module("stroke.cli.series", f"stage1={tmp_path / 'stage1'}",
                        f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode != 0
    assert "lacks fold(s) [1] of 3" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_stages_on_the_series_phantom_predict_slice_and_series_rows(tmp_path):
    data = tmp_path / "phantom"
    assert run_module("stroke.cli.synth", "layout=rsna", "n_patients=10", "image_size=32",
                      "slices_per_series=[6,8]", f"out_dir={data}").returncode == 0  # fmt: skip
    stage1 = tmp_path / "stage1"
    result = run_module(
        "stroke.cli.train", "-m", "experiment=ich_subtypes_series", *TINY, f"data.root={data}",
        "model.backbone.name=cnn_small", "data.folds=2", "data.fold=0,1", "evaluation.n_boot=10",
        "data.leakage=off", f"hydra.sweep.dir={stage1}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "series"
    result = run_module("stroke.cli.series", "experiment=ich_subtypes_series", f"stage1={stage1}",
                        "series.epochs=2", f"hydra.run.dir={run_dir}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "series.ckpt"
    features = np.load(run_dir / "oof_features.npz")
    assert len(features["path"]) == len(set(features["path"]))  # each slice once, out of fold
    one_series = sorted((data / "stage_2_train").glob("*.dcm"))
    out = tmp_path / "predictions.csv"
    inputs = data / "stage_2_train"
    result = run_module("stroke.cli.predict", f"ckpt_path={ckpt}", f"inputs={inputs}",
                        f"output_csv={out}", "device=cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert sum(r["level"] == "slice" for r in rows) == len(one_series)
    assert sum(r["level"] == "series" for r in rows) == 10
    assert all(r["prob_any"] for r in rows)
