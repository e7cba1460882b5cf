"""Learned patient-level aggregation: gated attention pooling over slice features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, compose_train

from stroke.build import build_datamodule
from stroke.evaluation.attention import attention_by_patient, fit_attention
from stroke.evaluation.evaluate import EvaluationConfig
from stroke.evaluation.metrics import roc_auc
from stroke.evaluation.report import evaluate_and_report
from stroke.models import create_model


def _bags(n_patients: int, seed: int):
    """Patients of 3-6 slices of 8 features; a positive patient has ONE signal slice."""
    rng = np.random.default_rng(seed)
    features, ids, targets = [], [], []
    for p in range(n_patients):
        n, positive = int(rng.integers(3, 7)), p % 2
        bag = rng.normal(0, 1, (n, 8))
        labels = np.zeros(n, dtype=np.int64)
        if positive:
            k = int(rng.integers(n))
            bag[k, 0] += 4.0
            labels[k] = 1
        features.append(bag)
        ids += [f"p{seed}_{p:03d}"] * n
        targets.append(labels)
    return np.concatenate(features).astype(np.float32), ids, np.concatenate(targets)


@pytest.mark.slow
def test_attention_finds_the_one_positive_slice_of_a_patient():
    features, ids, targets = _bags(40, seed=0)
    model, mean, std = fit_attention(features, ids, targets, num_classes=2, epochs=12, lr=3e-3)
    test_features, test_ids, test_targets = _bags(40, seed=1)
    patients = attention_by_patient(model, mean, std, test_features, test_ids, test_targets)
    assert len(patients.patient_ids) == 40 and patients.n_slices.sum() == len(test_ids)
    assert roc_auc(patients.targets == 1, patients.probs[:, 1]) > 0.9
    # the weight goes to the signal slice of a positive patient
    rows = [i for i, p in enumerate(test_ids) if p == patients.patient_ids[1]]
    bag = torch.from_numpy((test_features[rows] - mean) / std).float()
    _, weights = model(bag)
    assert int(weights.argmax()) == int(np.argmax(test_targets[rows]))


def test_the_report_scores_attention_beside_max_and_mean(phantom_dir, tmp_path):
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", "data.test_fraction=0.4"], tmp_path)
    datamodule = build_datamodule(cfg, augment=False)
    datamodule.setup("fit")
    torch.manual_seed(0)
    net = create_model("cnn_small", num_classes=datamodule.num_classes, in_chans=1)
    config = EvaluationConfig(n_boot=20, patient_aggregations=["max", "mean", "attention"])
    result = evaluate_and_report(net, datamodule, tmp_path / "eval", config)
    levels = result["patient_level"]
    assert set(levels) == {"max", "mean", "attention"}
    n_test_patients = len({s.patient_id for s in datamodule.split_samples("test")})
    assert levels["attention"]["n_patients"] == n_test_patients
    assert "attention" in (tmp_path / "eval" / "report.md").read_text()
