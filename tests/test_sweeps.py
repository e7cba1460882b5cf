"""Sweeps end to end on a tiny phantom, as a user types them: real processes, so all slow."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY
from omegaconf import OmegaConf
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

TIMEOUT = 600


def train_cmd(phantom_dir: Path, *overrides: str, multirun: bool = True) -> list[str]:
    """`stroke-train -m <tiny overrides> <overrides>` as a subprocess command."""
    flags = ["-m"] if multirun else []
    return [
        sys.executable,
        "-m",
        "stroke.cli.train",
        *flags,
        *TINY,
        f"data.root={phantom_dir}",
        *overrides,
    ]


def run_ok(cmd: list[str], log: Path, **kwargs) -> str:
    """Run a command to its end; on failure show the end of its output."""
    with log.open("w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT, **kwargs)
    text = log.read_text()
    assert code.returncode == 0, text[-4000:]
    return text


def runs_table(path: Path) -> list[dict[str, str]]:
    """`stroke-runs path=<path> format=csv`, parsed."""
    result = subprocess.run(
        [sys.executable, "-m", "stroke.cli.runs", f"path={path}", "format=csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def job_dirs(sweep_dir: Path) -> list[str]:
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


def assert_row_matches_metrics_json(row: dict[str, str], run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    for name in ("test/accuracy", "test/f1", "test/roc_auc"):
        assert float(row[name]) == metrics[name], name
    assert float(row["best val/f1"]) == metrics["val/f1_best"]


def test_grid_sweep_2x2_ends_in_a_table_of_its_four_runs(phantom_dir, tmp_path):
    sweep_dir = tmp_path / "grid"
    cmd = train_cmd(
        phantom_dir,
        "model=cnn_small,cnn_bn",
        "model.optimizer.lr=0.001,0.0003",
        f"hydra.sweep.dir={sweep_dir}",
    )
    run_ok(cmd, tmp_path / "grid.log")

    assert job_dirs(sweep_dir) == ["0", "1", "2", "3"]  # one directory per trial
    rows = runs_table(sweep_dir)
    assert sorted(r["run"] for r in rows) == ["0", "1", "2", "3"]
    assert {(r["model"], r["model.optimizer.lr"]) for r in rows} == {
        ("cnn_small", "0.001"),
        ("cnn_small", "0.0003"),
        ("cnn_bn", "0.001"),
        ("cnn_bn", "0.0003"),
    }
    for row in rows:
        assert row["status"] == "finished"
        assert_row_matches_metrics_json(row, sweep_dir / row["run"])


def _second_trial_started(url: str, study_dir: Path) -> bool:
    """One trial finished and the next one's run directory exists."""
    try:
        trials = optuna.load_study(study_name="cnn_optuna", storage=url).get_trials()
    except Exception:  # noqa: BLE001 - not created yet
        return False
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return bool(complete and running and (study_dir / str(running[0]) / "status.json").is_file())


def test_optuna_study_killed_after_its_first_trial_resumes_to_n_distinct_trials(
    phantom_dir, tmp_path
):
    """Killed (SIGKILL) during its 2nd trial, then re-run as two processes sharing the study."""
    study_dir = tmp_path / "train" / "studies" / "cnn_optuna"
    url = f"sqlite:///{study_dir}/optuna.db"
    cmd = train_cmd(
        phantom_dir,
        "hparams_search=cnn_optuna",  # a multirun by its config: no -m needed
        "model=cnn_small",  # a fixed value: out of the search space, keeps trials fast
        "augmentation=none",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=1",
        f"paths.log_dir={tmp_path}",
        multirun=False,
    )
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + TIMEOUT
        while True:
            if _second_trial_started(url, study_dir):
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
            assert time.time() < deadline, "the first trial never finished"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    kept = {
        t.number: t.value
        for t in optuna.load_study(study_name="cnn_optuna", storage=url).get_trials()
        if t.state == TrialState.COMPLETE
    }
    time.sleep(2.5)  # the killed trial's heartbeat is older than its grace period

    # re-run the same command, twice at once: both processes work on the one study
    logs = [(tmp_path / f"resume{i}.log").open("w") for i in range(2)]
    procs = [subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT) for f in logs]
    for proc, f in zip(procs, logs, strict=True):
        proc.wait(timeout=TIMEOUT)
        f.close()
        assert proc.returncode == 0, Path(f.name).read_text()[-4000:]

    study = optuna.load_study(study_name="cnn_optuna", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3  # distinct trials
    for number, value in kept.items():  # finished before the kill: kept, not run again
        assert study.trials[number].state == TrialState.COMPLETE
        assert study.trials[number].value == value
    launched = [
        int(n)
        for i in range(2)
        for n in re.findall(r"\t#(\d+) :", (tmp_path / f"resume{i}.log").read_text())
    ]
    assert len(launched) == len(set(launched)) == 2  # the killed trial again, and one more
    assert not set(launched) & set(kept)

    rows = {r["run"]: r for r in runs_table(study_dir)}
    for trial in complete:
        assert rows[str(trial.number)]["status"] == "finished"
        assert_row_matches_metrics_json(rows[str(trial.number)], study_dir / str(trial.number))
        assert float(rows[str(trial.number)]["best val/f1"]) == trial.value
    killed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [rows[str(t.number)]["status"] for t in killed] == ["failed"]
    # exactly n_trials finished, none twice, none lost: what the results file counts too
    assert OmegaConf.load(study_dir / "optimization_results.yaml").n_complete == 3
    assert sorted(t.number for t in complete) == sorted(set(kept) | set(launched))
    # what was searched and what the command fixed, as a grid's multirun.yaml tells
    saved = OmegaConf.load(study_dir / "multirun.yaml")
    assert "model=cnn_small" in saved.hydra.overrides.task
    assert "model.optimizer.lr" in saved.hydra.sweeper.params


def test_a_failing_trial_is_recorded_while_the_parallel_ones_finish(phantom_dir, tmp_path):
    """hydra/launcher=parallel: 2 trials side by side, each in its own process and core."""
    sweep_dir = tmp_path / "parallel"
    cmd = train_cmd(
        phantom_dir,
        "hydra/launcher=parallel",
        "hydra.launcher.parallel_trials=2",
        "model=cnn_small",
        "model.optimizer.lr=0.001,-1",
        f"hydra.sweep.dir={sweep_dir}",
        "sweep.fail_on_trial_error=false",  # the tally says it; the exit status stays 0
    )
    out = run_ok(cmd, tmp_path / "parallel.log")  # the sweep itself succeeds
    assert "Launching 2 jobs, 2 side by side" in out
    assert "sweep: 2 trial(s): 1 finished, 1 failed" in out

    rows = {r["run"]: r for r in runs_table(sweep_dir)}
    assert sorted(rows) == ["0", "1"]
    assert rows["0"]["status"] == "finished"
    assert_row_matches_metrics_json(rows["0"], sweep_dir / "0")
    assert rows["1"]["status"] == "failed"
    assert rows["1"]["error"] == "ConfigError: model.optimizer.lr=-1: expected a number > 0"
    status = json.loads((sweep_dir / "1" / "status.json").read_text())
    assert "Traceback" in status["traceback"]


def test_submitit_local_launcher_runs_a_trial(phantom_dir, tmp_path):
    """submitit's local executor: what hydra/launcher=slurm uses, on this machine."""
    sweep_dir = tmp_path / "submitit"
    cmd = train_cmd(
        phantom_dir,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "model=cnn_small",
        f"hydra.sweep.dir={sweep_dir}",
    )
    run_ok(cmd, tmp_path / "submitit.log")
    (row,) = runs_table(sweep_dir)
    assert row["status"] == "finished"
    assert_row_matches_metrics_json(row, sweep_dir / "0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_multinode_ddp_under_slurm_simulated_with_two_cpu_processes(phantom_dir, tmp_path):
    """trainer=ddp_multinode as SLURM starts it: one process per node, ranks from SLURM's env."""
    run_dir = tmp_path / "multinode"
    cmd = [
        sys.executable, "-m", "stroke.cli.train", *(o for o in TINY if "trainer.devices" not in o),
        f"data.root={phantom_dir}", "model=cnn_small", f"hydra.run.dir={run_dir}",
        "trainer=ddp_multinode", "trainer.num_nodes=2", "trainer.devices=1",
        "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.sync_batchnorm=false",
    ]  # fmt: skip
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NAME": "stroke",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "localhost",
        "MASTER_PORT": str(_free_port()),
    }
    logs = [(tmp_path / f"node{rank}.log").open("w") for rank in range(2)]
    nodes = [
        subprocess.Popen(
            cmd,
            stdout=logs[rank],
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                **slurm,
                "SLURM_PROCID": str(rank),
                "SLURM_NODEID": str(rank),
                "SLURM_LOCALID": "0",
            },
        )  # fmt: skip
        for rank in range(2)
    ]
    for node, log in zip(nodes, logs, strict=True):
        node.wait(timeout=TIMEOUT)
        log.close()
        assert node.returncode == 0, Path(log.name).read_text()[-4000:]
    rank1 = (tmp_path / "node1.log").read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in rank1  # one DDP group over the two "nodes"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert (run_dir / "metrics.json").is_file()
