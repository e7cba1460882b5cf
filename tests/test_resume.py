"""A stopped run resumed from last.ckpt ends exactly as the uninterrupted run (CPU, deterministic).

Exact: the same weights bit for bit and the same metrics, train and validation included.
What makes it so: EpochSampler draws each epoch's order and augmentation from (seed,
epoch), RngState keeps the global RNGs in the checkpoint, the best score is saved, and a
resumed run continues in its own directory so the best-checkpoint tracking carries on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_train, run_module

from stroke.cli.train import train
from stroke.runs.interrupt import RunInterrupted

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
#: 3 epochs of 4 batches; cnn_small has dropout and the default augmentation is random
RESUMABLE = [
    *(
        o
        for o in TINY
        if not o.startswith(("data.batch_size", "+trainer.limit_train", "trainer.max"))
    ),
    "data.batch_size=4",
    "+trainer.limit_train_batches=4",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "model=cnn_small",
    "logger=none",
    "evaluation.n_boot=20",
]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    ours, theirs = weights(run_dir), weights(reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    ours_m = json.loads((run_dir / "metrics.json").read_text())
    theirs_m = json.loads((reference / "metrics.json").read_text())
    assert ours_m["metrics"] == theirs_m["metrics"]
    assert ours_m["epochs"] == theirs_m["epochs"]


@pytest.fixture(scope="module")
def uninterrupted(phantom_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(compose_train([*RESUMABLE, f"data.root={phantom_dir}"], run_dir))
    return run_dir


def test_sigterm_mid_epoch_then_resume_ends_as_the_uninterrupted_run(
    phantom_dir, uninterrupted, tmp_path
):
    overrides = [*RESUMABLE, f"data.root={phantom_dir}"]
    stop = ["+callbacks.fault._target_=faults.SignalAt", "+callbacks.fault.epoch=1",
            "+callbacks.fault.batch=1"]  # fmt: skip
    with pytest.raises(RunInterrupted) as interrupted:
        train(compose_train([*overrides, *stop], tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert interrupted.value.signum == signal.SIGTERM and interrupted.value.checkpoint == last
    saved = torch.load(last, weights_only=True)  # loadable safely: RNG states are tensors/lists
    per_epoch = torch.load(uninterrupted / "checkpoints" / "last.ckpt")["global_step"] // 3
    assert saved["epoch"] == 1 and saved["global_step"] == per_epoch + 2  # after batch 1

    train(compose_train([*overrides, f"ckpt_path={last}"], tmp_path))
    assert_same_run(tmp_path, uninterrupted)


def test_kill_9_mid_epoch_then_resume_from_last_ckpt_ends_as_the_uninterrupted_run(
    phantom_dir, uninterrupted, tmp_path
):
    """The real thing: `kill -9` (nothing written at the kill), then the documented command."""
    run_dir = tmp_path / "run"
    overrides = [*RESUMABLE, f"data.root={phantom_dir}"]
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    killed = run_module(
        "stroke.cli.train", *overrides, f"hydra.run.dir={run_dir}",
        "+callbacks.fault._target_=faults.KillAt", "+callbacks.fault.epoch=1",
        "+callbacks.fault.batch=1", env=env,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the last complete epoch
    first_config = (run_dir / ".hydra" / "config.yaml").read_text()

    # no hydra.run.dir: a resumed run continues in its checkpoint's run directory
    resumed = run_module("stroke.cli.train", *overrides, f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run directory: {run_dir}" in resumed.stdout
    assert (run_dir / ".hydra" / "config.yaml").read_text() == first_config  # kept
    assert len(list((run_dir / ".hydra").glob("resumed_*/config.yaml"))) == 1
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert_same_run(run_dir, uninterrupted)


def test_a_crash_after_a_step_checkpoint_resumes_mid_epoch_exactly(
    phantom_dir, uninterrupted, tmp_path
):
    """`+callbacks.last_checkpoint.every_n_train_steps=N` for long epochs: a crash loses at
    most N steps, and the resume from the mid-epoch last.ckpt is as exact as any other."""
    overrides = [*RESUMABLE, f"data.root={phantom_dir}",
                 "+callbacks.last_checkpoint.every_n_train_steps=3"]  # fmt: skip
    crash = ["+callbacks.fault._target_=faults.CrashAt", "+callbacks.fault.epoch=2",
             "+callbacks.fault.batch=0"]  # fmt: skip
    with pytest.raises(RuntimeError, match="crash injected"):
        train(compose_train([*overrides, *crash], tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    per_epoch = torch.load(uninterrupted / "checkpoints" / "last.ckpt")["global_step"] // 3
    assert torch.load(last, weights_only=True)["global_step"] % per_epoch != 0  # mid-epoch

    train(compose_train([*overrides, f"ckpt_path={last}"], tmp_path))
    assert_same_run(tmp_path, uninterrupted)


def test_a_mixup_run_interrupted_mid_epoch_resumes_mixing_as_it_would_have(
    phantom_dir, uninterrupted, tmp_path
):
    """timm's Mixup draws from NumPy's global generator, which checkpoints carry."""
    overrides = [*RESUMABLE, f"data.root={phantom_dir}", "model.mixup.mixup_alpha=0.4",
                 "model.mixup.cutmix_alpha=1.0"]  # fmt: skip
    reference = tmp_path / "uninterrupted"
    train(compose_train(overrides, reference))
    mixed, plain = weights(reference), weights(uninterrupted)
    assert not all(torch.equal(mixed[k], plain[k]) for k in plain)  # it did mix
    stop = ["+callbacks.fault._target_=faults.SignalAt", "+callbacks.fault.epoch=1",
            "+callbacks.fault.batch=1"]  # fmt: skip
    run_dir = tmp_path / "interrupted"
    with pytest.raises(RunInterrupted):
        train(compose_train([*overrides, *stop], run_dir))
    train(
        compose_train([*overrides, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], run_dir)
    )
    assert_same_run(run_dir, reference)
