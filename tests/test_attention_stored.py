"""The attention pooling a run's report fits is stored in its best checkpoint, and stroke-eval
scores with that one instead of fitting another on the data it is given."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, run_module

from stroke.evaluation.attention import ATTENTION_KEY, AttentionPooler, fit_attention


def test_a_stored_pooler_gives_the_same_outputs_after_a_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(24, 8)).astype(np.float32)
    patients = [f"P{i // 3}" for i in range(24)]
    targets = np.array([(i // 3) % 2 for i in range(24)])
    model, mean, std = fit_attention(features, patients, targets, 2, epochs=3)
    pooler = AttentionPooler(model, mean, std, "a test")
    torch.save(pooler.to_state(), tmp_path / "pooler.pt")
    again = AttentionPooler.from_state(torch.load(tmp_path / "pooler.pt", weights_only=True))
    bag = torch.from_numpy((features[:3] - mean) / std)
    with torch.no_grad():
        assert torch.equal(pooler.model(bag)[0], again.model(bag)[0])
    assert np.array_equal(again.std, std) and again.fitted_on == "a test"


@pytest.mark.slow
def test_stroke_eval_scores_patients_with_the_run_s_stored_pooler(phantom_dir, tmp_path):
    run_dir = tmp_path / "run"
    attention = "evaluation.patient_aggregations=[max,mean,attention]"
    result = run_module(
        "stroke.cli.train", *TINY, f"data.root={phantom_dir}", attention,
        "evaluation.n_boot=20", f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((run_dir / "metrics.json").read_text())["best_model_path"]
    assert ATTENTION_KEY in torch.load(best, weights_only=True)
    trained = json.loads((run_dir / "eval" / "metrics.json").read_text())
    evaluated = run_module(
        "stroke.cli.eval", f"ckpt_path={best}", attention, "evaluation.n_boot=20",
        "data.num_workers=0", f"hydra.run.dir={tmp_path / 'eval'}",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["context"]["attention pooling"].startswith("stored in the checkpoint")
    assert trained["context"]["attention pooling"].startswith("fitted now")
    assert again["patient_level"]["attention"] == trained["patient_level"]["attention"]


def test_flip_tta_pools_the_mean_of_both_views_features_and_an_ensemble_has_none():
    from stroke.evaluation.attention import has_pooled_features, pooled_features
    from stroke.models import create_model
    from stroke.tasks.classification.ensemble import FlipAverage, ProbabilityMean

    net = create_model("cnn_small", num_classes=2, in_chans=1).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        both = (pooled_features(net, x) + pooled_features(net, x.flip(-1))) / 2
        assert torch.allclose(pooled_features(FlipAverage(net), x), both, atol=1e-6)
    assert has_pooled_features(FlipAverage(net))
    assert not has_pooled_features(ProbabilityMean([net, net]))


def test_a_requested_aggregation_that_cannot_be_computed_is_said_in_its_place():
    from stroke.evaluation.evaluate import EvaluationConfig, SplitPredictions, evaluate_predictions

    rng = np.random.default_rng(0)
    targets = np.array([0, 1] * 6)
    probs = np.clip(np.stack([1 - targets, targets], 1) * 0.6 + rng.random((12, 2)) * 0.4, 0, 1)
    probs = probs / probs.sum(1, keepdims=True)
    split = SplitPredictions("test", [f"{i}.png" for i in range(12)],
                             [f"P{i // 3}" for i in range(12)], targets, probs)  # fmt: skip
    config = EvaluationConfig(n_boot=5, patient_aggregations=["max", "attention"])
    result = evaluate_predictions(split, None, ["none", "bleed"], config, {"skipped": "why not"})
    assert result["patient_level"]["attention"] == {"skipped": "why not"}
    assert "metrics" in result["patient_level"]["max"]
