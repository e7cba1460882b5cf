"""A DICOM folder end to end: `data=dicom` trains, and the model predicts on the raw files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import SHARED_DATASETS, TINY, compose_train
from dicom_factory import CQ500, cq500_labelled_tree
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from stroke.cli.train import train
from stroke.data.dataset import ImageClassificationDataset
from stroke.inference.predictor import TorchBackend, predict_files
from stroke.tasks.classification.checkpoint import load_classifier
from stroke.tasks.classification.module import StrokeClassifier

CQ500_DIR = SHARED_DATASETS / CQ500


@pytest.mark.slow
@pytest.mark.skipif(not CQ500_DIR.is_dir(), reason=f"{CQ500_DIR} not present")
def test_train_on_a_dicom_tree_and_predict_on_the_folder(tmp_path):
    root = cq500_labelled_tree(CQ500_DIR, tmp_path / "dicom", patients=8)
    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "data=dicom",
        f"data.root={root}",
        "model=cnn_small",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.leakage=error",
    ]
    cfg = compose_train(overrides, run_dir)
    metrics = train(cfg)

    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["classes"] == ["normal", "hemorrhage"]
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    rows = list(csv.DictReader((run_dir / "splits.csv").open()))
    assert len(rows) == 16 and {r["patient_id"] for r in rows} == {f"CQ{i:02d}" for i in range(8)}
    # distinct slices of one real scan, spread over patients and splits, are not duplicates
    assert not (run_dir / "leakage.csv").exists()

    # predict every image of the folder with the best checkpoint, as the datamodule reads it
    model = StrokeClassifier.load_from_checkpoint(summary["best_model_path"]).eval()
    datamodule = instantiate(cfg.data)
    samples = datamodule.source.load()
    dataset = ImageClassificationDataset(
        samples,
        {"normal": 0, "hemorrhage": 1},
        datamodule.loader,
        datamodule.preprocessing,
    )
    with torch.no_grad():
        probs = torch.cat([model(x).softmax(1) for x, _ in DataLoader(dataset, batch_size=8)])
    assert probs.shape == (16, 2)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(16))

    # stroke-predict on the raw files needs nothing but the checkpoint: it records the window
    classifier = load_classifier(summary["best_model_path"])
    assert classifier.preprocessing.dicom_windows == ({"width": 80.0, "level": 40.0},)
    predicted = [
        r
        for batch in predict_files(
            [s.path for s in samples],
            classifier.preprocessing,
            TorchBackend(classifier.net),
            progress=False,
        )
        for r in batch
    ]
    assert not [r.error for r in predicted if r.error]
    torch.testing.assert_close(
        torch.tensor(np.stack([r.probs for r in predicted])), probs, atol=1e-5, rtol=1e-4
    )
