"""Fold ensembles: several checkpoints (a list, a run or a multirun directory) averaged as one
classifier through the one prediction path."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import compose_config
from torch import nn

from stroke.cli.predict import run_prediction
from stroke.errors import CheckpointError, ConfigError
from stroke.runs.checkpoints import checkpoint_paths
from stroke.tasks.classification.ensemble import ProbabilityMean, load_ensemble


def read_probs(path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])


def test_the_ensemble_softmax_is_the_mean_of_the_members_probabilities():
    torch.manual_seed(0)
    members = [nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    got = ProbabilityMean(members)(x).softmax(1)
    torch.testing.assert_close(got, expected)


def _second_member(trained_run, tmp_path):
    """Another run directory: the trained run's checkpoint with every weight shifted."""
    other = tmp_path / "other_run"
    (other / "checkpoints").mkdir(parents=True)
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for key, value in ckpt["state_dict"].items():
        if key.startswith("net.") and value.is_floating_point():
            value += 0.05 * torch.randn(value.shape, generator=generator)
    torch.save(ckpt, other / "checkpoints" / "last.ckpt")
    (other / "metrics.json").write_text(json.dumps({"best_model_path": "gone/last.ckpt"}))
    return other


def test_predict_averages_the_probabilities_of_a_list_of_checkpoints(
    trained_run, phantom_dir, tmp_path
):
    other = _second_member(trained_run, tmp_path)
    first = trained_run / "checkpoints" / "last.ckpt"
    images = sorted(phantom_dir.glob("*/P*.png"))[:6]
    inputs = f"inputs=[{','.join(map(str, images))}]"
    probs = {}
    for name, ckpt in (("a", str(first)), ("b", str(other)), ("ab", f"[{first},{other}]")):
        out = tmp_path / f"{name}.csv"
        run_prediction(
            compose_config(
                "predict",
                [
                    "progress=false",
                    "num_workers=0",
                    inputs,
                    f"ckpt_path={ckpt}",
                    f"output_csv={out}",
                ],  # fmt: skip
            )
        )
        probs[name] = read_probs(out)
    assert not np.allclose(probs["a"], probs["b"], atol=1e-3)  # two different members
    np.testing.assert_allclose(probs["ab"], (probs["a"] + probs["b"]) / 2, atol=2e-6)


def test_a_multirun_directory_names_the_best_checkpoint_of_each_run(trained_run, tmp_path):
    sweep = tmp_path / "sweep"
    for job in ("0", "1", "10"):
        shutil.copytree(trained_run / "checkpoints", sweep / job / "checkpoints")
        (sweep / job / "metrics.json").write_text(
            json.dumps({"best_model_path": str(sweep / job / "checkpoints" / "last.ckpt")})
        )
    paths = checkpoint_paths(str(sweep))
    assert [p.parent.parent.name for p in paths] == ["0", "1", "10"]
    ensemble = load_ensemble(str(sweep))
    assert ensemble.members == tuple(paths) and len(ensemble.net.members) == 3
    # one run directory is its own best checkpoint
    assert checkpoint_paths(str(sweep / "1")) == [sweep / "1" / "checkpoints" / "last.ckpt"]
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_paths(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="without finished runs"):
        checkpoint_paths(str(tmp_path / "sweep" / "0" / "checkpoints"))


def test_members_that_disagree_on_classes_are_refused(trained_run, tmp_path):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["class_names"] = ["x", "y", "z"]
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    with pytest.raises(CheckpointError, match="ensemble members disagree"):
        load_ensemble([str(trained_run / "checkpoints" / "last.ckpt"), str(other)])
    with pytest.raises(ConfigError, match="expected a checkpoint"):
        load_ensemble([])


def test_eval_refuses_to_score_fold_models_on_a_fold_they_trained_on():
    from omegaconf import OmegaConf

    from stroke.tasks.classification.evaluate import check_ensemble_test_split

    with pytest.raises(ConfigError, match="other folds' models trained on those patients"):
        check_ensemble_test_split(OmegaConf.create({"fold": 2, "fold_split": "test"}), "run")
    check_ensemble_test_split(OmegaConf.create({"fold": 2, "fold_split": "val"}), "run")
    check_ensemble_test_split(OmegaConf.create({"fold": None}), "an external set")


def test_flip_tta_of_training_is_the_predictors_flip_tta():
    from stroke.inference.predictor import TorchBackend, class_probabilities
    from stroke.tasks.classification.ensemble import FlipAverage
    from stroke.tasks.classification.module import StrokeClassifier

    torch.manual_seed(0)
    module = StrokeClassifier({"name": "cnn_small"}, num_classes=2, input_channels=1, tta=True)
    module.eval()
    x = torch.randn(3, 1, 32, 32)
    expected = class_probabilities(TorchBackend(module.net), x.numpy(), flip_tta=True)
    got = FlipAverage(module.net)(x).softmax(1).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # validation and test steps score the flip average; training steps the plain network
    _, probs, _ = module._step((x, torch.tensor([0, 1, 0])))
    np.testing.assert_allclose(probs.detach().numpy(), expected, atol=1e-5)
    module.train()
    _, probs, _ = module._step((x, torch.tensor([0, 1, 0])))
    plain = module.net(x).softmax(1).detach().numpy()
    np.testing.assert_allclose(probs.detach().numpy(), plain, atol=1e-5)
