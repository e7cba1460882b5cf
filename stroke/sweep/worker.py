"""One trial in its own process: `python -m stroke.sweep.worker <job.pkl> <result.pkl>`.

Started by `ParallelTrialLauncher` with the slot's CUDA_VISIBLE_DEVICES and thread counts in
the environment; pins itself to the slot's cores before anything imports torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _pin_to_slot_cpus() -> None:
    cpus = os.environ.get("STROKE_TRIAL_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def _die_with_parent() -> None:
    """A killed sweep must not leave orphan trials holding GPUs (Linux only, best effort)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(job_file: Path, result_file: Path) -> None:
    """Run the pickled Hydra job and pickle its JobReturn next to it."""
    _pin_to_slot_cpus()
    _die_with_parent()
    import cloudpickle  # unpickling the job imports torch: after pinning, never before
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    payload = cloudpickle.loads(Path(job_file).read_bytes())
    setup_globals()
    Singleton.set_state(payload["singleton_state"])
    config = payload["config"]
    HydraConfig.instance().set_config(config)
    ret = run_job(
        hydra_context=payload["hydra_context"],
        task_function=payload["task_function"],
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        data = cloudpickle.dumps(ret)
    except Exception as err:  # noqa: BLE001 - an exception that cannot be pickled
        ret.return_value = RuntimeError(f"{type(ret._return_value).__name__}: {ret._return_value}")
        data = cloudpickle.dumps(ret)
        print(f"trial result not picklable as is ({err}); sent as text", file=sys.stderr)
    Path(result_file).write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m stroke.sweep.worker <job.pkl> <result.pkl>")
    run(Path(sys.argv[1]), Path(sys.argv[2]))
