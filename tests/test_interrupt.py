"""SIGINT, SIGTERM and SLURM preemption: a consistent last.ckpt, an honest status, never exit 0."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

import pytest
import torch
from commands import run_main
from conftest import TINY

from stroke.cli import train as train_cli
from stroke.runs.resume import SLURM_NOTES

pytestmark = pytest.mark.slow

#: two epochs of three batches
RUN = [o for o in TINY if not o.startswith("data.batch_size")] + [
    "data.batch_size=4", "trainer.max_epochs=2", "model=cnn_small", "logger=none",
    "evaluation.n_boot=20",
]  # fmt: skip


def fault(epoch: int, batch: int, *signals: int) -> list[str]:
    return [
        "+callbacks.fault._target_=faults.SignalAt",
        f"+callbacks.fault.epoch={epoch}",
        f"+callbacks.fault.batch={batch}",
        f"+callbacks.fault.signals=[{','.join(str(int(s)) for s in signals)}]",
    ]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_writes_last_ckpt_marks_the_run_and_exits_non_zero(
    signum, code, phantom_dir, tmp_path, capsys
):
    status, _, err = run_main(
        train_cli.main, *RUN, f"data.root={phantom_dir}", f"hydra.run.dir={tmp_path}",
        *fault(1, 1, signum), capsys=capsys,
    )  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert status == code
    assert f"stroke-train: interrupted by {signum.name}; resume with" in err
    assert f"ckpt_path={last}" in err and "Traceback" not in err
    record = json.loads((tmp_path / "status.json").read_text())
    assert record["status"] == "interrupted" and record["signal"] == signum.name
    assert record["last_checkpoint"] == str(last)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # consistent, mid-epoch 1
    assert not (tmp_path / "metrics.json").exists()  # no result pretends the run finished
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


def _fake_scontrol(bin_dir: Path) -> Path:
    """`scontrol` that records its arguments, as SLURM's would requeue the job."""
    log = bin_dir / "scontrol.log"
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


def test_slurm_preemption_requeues_and_the_requeued_job_resumes_from_last_ckpt(
    phantom_dir, tmp_path, monkeypatch, capsys
):
    """Simulated: SLURM's environment, its USR1 warning then SIGTERM, and the same command
    started again with SLURM_RESTART_COUNT=1 (what `scontrol requeue` does)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    requeued = _fake_scontrol(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "stroke",
             "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    logs = tmp_path / "outputs"
    command = [*RUN, f"data.root={phantom_dir}", f"paths.log_dir={logs}"]

    status, _, err = run_main(
        train_cli.main, *command, *fault(1, 0, signal.SIGUSR1, signal.SIGTERM), capsys=capsys
    )
    assert status == 143, err
    assert requeued.read_text().split() == ["requeue", "4242"]  # Lightning's auto-requeue
    runs = logs / "train" / "runs"
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    assert (runs / SLURM_NOTES / "4242").read_text() == str(run_dir)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    status, out, err = run_main(train_cli.main, *command, capsys=capsys)
    assert status == 0, err
    assert f"run directory: {run_dir}" in out  # the first attempt's directory, continued
    assert sorted(p.name for p in runs.iterdir()) == sorted([SLURM_NOTES, run_dir.name])
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["epochs"] == 2
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
