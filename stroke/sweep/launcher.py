"""Run a sweep's trials side by side, each in its own process on its own GPU (or CPU cores).

Each trial is a fresh Python process (`python -m stroke.sweep.worker`) started with
CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS and its CPU affinity already set, so CUDA initialises
on the trial's GPU only and trials do not fight over cores. A trial that crashes the process
(out of memory, a segfault) fails alone: the launcher records it and the others go on.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from stroke.hardware import usable_cpu_ids
from stroke.runs.record import FAILED, write_status
from stroke.sweep.devices import TrialSlot, assign_trial_slots, visible_gpus

log = logging.getLogger(__name__)


class TrialProcessError(RuntimeError):
    """A trial's process ended without returning a result (killed, out of memory, segfault)."""


@dataclass
class _Job:
    idx: int
    overrides: list[str]
    config: DictConfig
    job_dir: Path


class ParallelTrialLauncher:
    """Hydra launcher: up to one trial per slot at a time, slots from `assign_trial_slots`."""

    def __init__(
        self,
        parallel_trials: int | None = None,
        gpus: str | Sequence[int | str] | None = "auto",
        trials_per_gpu: int = 1,
        pin_cpus: bool = True,
    ) -> None:
        self.parallel_trials = parallel_trials
        self.gpus = gpus
        self.trials_per_gpu = trials_per_gpu
        self.pin_cpus = pin_cpus
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def slots(self) -> list[TrialSlot]:
        """Where trials run on this machine, from the launcher config."""
        gpus = visible_gpus(self.gpus)
        return assign_trial_slots(gpus, usable_cpu_ids(), self.parallel_trials, self.trials_per_gpu)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Run every job, as many at once as there are slots; results in the order given."""
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        slots = self.slots()
        log.info(
            "Launching %d jobs, %d side by side: %s",
            len(job_overrides),
            len(slots),
            "; ".join(f"slot {s.index}: {s.describe()}" for s in slots),
        )
        # composing every trial's config first: a bad override fails before anything starts
        jobs = [self._job(initial_job_idx + i, o) for i, o in enumerate(job_overrides)]
        free: queue.Queue[TrialSlot] = queue.Queue()
        for slot in slots:
            free.put(slot)
        with (
            tempfile.TemporaryDirectory(prefix="stroke-trials-") as tmp,
            ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="trial") as pool,
        ):
            futures = [pool.submit(self._run_on_free_slot, job, free, Path(tmp)) for job in jobs]
            results = [future.result() for future in futures]
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return results

    def _job(self, idx: int, overrides: Sequence[str]) -> _Job:
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
            config.hydra.job.num = idx
        job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        return _Job(idx, list(overrides), config, job_dir)

    def _run_on_free_slot(self, job: _Job, free: queue.Queue[TrialSlot], tmp: Path) -> JobReturn:
        slot = free.get()
        try:
            return self._run_in_process(job, slot, tmp)
        finally:
            free.put(slot)

    def _run_in_process(self, job: _Job, slot: TrialSlot, tmp: Path) -> JobReturn:
        """Start the trial's process with the slot's environment and wait for its JobReturn."""
        job_file, result_file = tmp / f"job_{job.idx}.pkl", tmp / f"result_{job.idx}.pkl"
        payload = {
            "hydra_context": self.hydra_context,
            "config": job.config,
            "task_function": self.task_function,
            "singleton_state": Singleton.get_state(),
        }
        job_file.write_bytes(cloudpickle.dumps(payload))
        env = {**os.environ, **slot.env()}
        if self.pin_cpus:
            env["STROKE_TRIAL_CPUS"] = ",".join(str(c) for c in slot.cpus)
        log.info(
            "\t#%d on %s : %s", job.idx, slot.describe(), " ".join(filter_overrides(job.overrides))
        )
        cmd = [sys.executable, "-m", "stroke.sweep.worker", str(job_file), str(result_file)]
        code = subprocess.run(cmd, env=env, check=False).returncode
        if code == 0 and result_file.is_file():
            return cloudpickle.loads(result_file.read_bytes())
        error = TrialProcessError(
            f"trial #{job.idx} ({' '.join(job.overrides)}) process exited with code {code} "
            "without a result" + (" (killed by a signal, e.g. out of memory)" if code < 0 else "")
        )
        log.error("%s", error)
        write_status(job.job_dir, FAILED, error=f"{type(error).__name__}: {error}")
        ret = JobReturn(overrides=job.overrides, cfg=job.config, status=JobStatus.FAILED)
        ret.return_value = error
        return ret
