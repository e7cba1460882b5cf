"""Where a resumed run writes: the directory of the run it continues.

A stroke-train run given `ckpt_path=<run>/checkpoints/last.ckpt` continues in `<run>`:
Lightning restores the best-checkpoint tracking only in the same directory, and status,
metrics and logs stay in one place. Its config is saved beside the first attempt's, in
`.hydra/resumed_<time>/`. Under SLURM, a job requeued after preemption finds the directory
its first attempt noted and resumes from its `last.ckpt`. The resolvers `stroke_run_dir`
and `stroke_config_subdir` (conf/hydra/default.yaml) call `continued_run`. Nothing here
imports torch: Hydra resolves these before every command.
"""

from __future__ import annotations

import os
from pathlib import Path

from stroke.io import atomic_write_text
from stroke.runs.record import FINISHED, read_status

#: Folder beside run directories where SLURM jobs note theirs, for their requeued attempts.
SLURM_NOTES = ".slurm_jobs"


# -- where a resumed run writes --------------------------------------------------------------
def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """`<run>` for `<run>/checkpoints/x.ckpt` written by a stroke run, else None."""
    run = Path(ckpt_path).expanduser().resolve().parent.parent
    return run if (run / ".hydra" / "config.yaml").is_file() else None


def slurm_job_id() -> str | None:
    """The SLURM job (array task) this process belongs to, or None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    array_job, array_task = (
        os.environ.get("SLURM_ARRAY_JOB_ID"),
        os.environ.get("SLURM_ARRAY_TASK_ID"),
    )
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return job


def continued_run(runs_dir: str | Path, task: str, ckpt_path: str | None) -> Path | None:
    """The earlier run a new `task` run continues, or None for a fresh run directory.

    stroke-train with `ckpt_path=<run>/checkpoints/x.ckpt` continues `<run>`; without
    ckpt_path, under SLURM, the run its job noted in `<runs_dir>/.slurm_jobs/<job>`.
    """
    if task != "train":
        return None
    if ckpt_path:
        return run_dir_of_checkpoint(ckpt_path)
    job = slurm_job_id()
    note = Path(runs_dir) / SLURM_NOTES / job if job else None
    if note is not None and note.is_file():
        earlier = Path(note.read_text().strip())
        if earlier.is_dir():
            return earlier
    return None


def run_dir_resolver(runs_dir: str, name: str, task: str, ckpt_path: str | None) -> str:
    """`${stroke_run_dir:...}`: `<runs_dir>/<name>`, or the run this one continues."""
    earlier = continued_run(runs_dir, task, ckpt_path)
    return str(earlier) if earlier is not None else f"{runs_dir}/{name}"


def config_subdir_resolver(runs_dir: str, task: str, ckpt_path: str | None, now: str) -> str:
    """`${stroke_config_subdir:...}`: `.hydra`, or `.hydra/resumed_<now>` in a continued
    run, so the first attempt's config (read by stroke-eval) is kept."""
    if continued_run(runs_dir, task, ckpt_path) is not None:
        return f".hydra/resumed_{now}"
    return ".hydra"


def note_slurm_run(run_dir: Path) -> None:
    """Under SLURM, note this run's directory for the job's requeued attempts."""
    job = slurm_job_id()
    if not job:
        return

    atomic_write_text(Path(run_dir).parent / SLURM_NOTES / job, str(run_dir))


def checkpoint_to_resume(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`ckpt_path` when given; under SLURM, the `last.ckpt` of this job's unfinished run
    (its requeued attempt continues where preemption stopped it); else None."""
    import logging

    if ckpt_path or not slurm_job_id():
        return ckpt_path or None
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    status = (read_status(run_dir) or {}).get("status")
    if not last.is_file() or status == FINISHED:
        return None
    logging.getLogger(__name__).warning(
        "SLURM job %s (restart %s) resumes its run from %s (it ended %s)",
        slurm_job_id(), os.environ.get("SLURM_RESTART_COUNT", "?"), last, status,
    )  # fmt: skip
    return str(last)
