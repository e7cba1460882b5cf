"""`experiment=head_ct_phantom_pretrain` then `experiment=head_ct_hemorrhage_cv`: the real-data
preset starts from the network the phantom trained, found as the newest finished run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import TINY, compose_train, run_module

from stroke.build import build_datamodule, build_model
from stroke.errors import ConfigError
from stroke.runs.collect import newest_checkpoint

TASK = "head_ct_phantom_pretrain"


def _finished_run(phantom_dir, outputs):
    common = [*TINY, f"data.root={phantom_dir}", f"paths.log_dir={outputs}", "logger=none",
              "callbacks.gradcam=null", "evaluation.n_boot=10"]  # fmt: skip
    result = run_module("stroke.cli.train", f"experiment={TASK}", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    return common


def test_the_cv_preset_starts_from_the_newest_phantom_pretraining_run(phantom_dir, tmp_path):
    outputs = tmp_path / "outputs"
    common = [*TINY, f"data.root={phantom_dir}", f"paths.log_dir={outputs}", "logger=none"]
    # no pretraining run yet: one line saying what to run first, before any training
    refused = run_module("stroke.cli.train", "experiment=head_ct_hemorrhage_cv", *common)
    assert refused.returncode == 2
    assert f"run `stroke-train experiment={TASK}` first" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr

    _finished_run(phantom_dir, outputs)
    ckpt = newest_checkpoint(outputs, TASK)
    cfg = compose_train(["experiment=head_ct_hemorrhage_cv", *common], tmp_path / "cv")
    assert cfg.model.backbone.weights_path == str(ckpt)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    net = build_model(cfg, datamodule).net
    pretrained = torch.load(ckpt, weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():
        if not key.startswith("head.fc."):  # the classifier starts fresh
            assert torch.equal(value, pretrained[f"net.{key}"]), key


def test_newest_checkpoint_skips_runs_that_did_not_finish(phantom_dir, tmp_path):
    outputs = tmp_path / "outputs"
    _finished_run(phantom_dir, outputs)
    finished = newest_checkpoint(outputs, TASK)
    # a later run that failed (or is still running) is not a starting point
    failed = finished.parents[2] / "zz_failed"
    shutil.copytree(finished.parents[1], failed)
    (failed / "status.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    os.utime(failed / "checkpoints" / "last.ckpt")
    assert newest_checkpoint(outputs, TASK) == finished
    with pytest.raises(ConfigError, match=r"no finished run of experiment=other_task"):
        newest_checkpoint(outputs, "other_task")
