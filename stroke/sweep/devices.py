"""Which GPU and which CPU cores each of N parallel trials gets: a pure function, unit-tested."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from stroke.errors import ConfigError

#: Cores per trial when running on CPU without an explicit `parallel_trials`.
CPUS_PER_CPU_TRIAL = 4


@dataclass(frozen=True)
class TrialSlot:
    """One place a trial runs: a GPU (or none) and the CPU cores it is pinned to."""

    index: int
    #: the value of CUDA_VISIBLE_DEVICES for the trial: one GPU id, or "" for a CPU-only trial
    gpu: str
    cpus: tuple[int, ...]

    @property
    def threads(self) -> int:
        """Torch/OpenMP threads for the trial: its share of the cores, so trials do not fight."""
        return max(1, len(self.cpus))

    def env(self) -> dict[str, str]:
        """Environment of the trial's process, set before Python (and CUDA) start in it."""
        threads = str(self.threads)
        return {
            "CUDA_VISIBLE_DEVICES": self.gpu,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "STROKE_TRIAL_SLOT": str(self.index),
        }

    def describe(self) -> str:
        """`GPU 1, 8 cores` / `CPU, 2 cores`: what the launch log says about this slot."""
        where = f"GPU {self.gpu}" if self.gpu else "CPU"
        return f"{where}, {self.threads} core{'s' if self.threads != 1 else ''}"


def assign_trial_slots(
    gpus: Sequence[str],
    cpus: Sequence[int],
    parallel_trials: int | None = None,
    trials_per_gpu: int = 1,
) -> list[TrialSlot]:
    """Slots for trials that run side by side: distinct GPUs first, then several per GPU.

    With GPUs, there are `len(gpus) * trials_per_gpu` slots (the default number of parallel
    trials); slot i gets GPU `gpus[i % len(gpus)]`, so two trials on two GPUs never share one.
    Without GPUs, `parallel_trials` defaults to one trial per `CPUS_PER_CPU_TRIAL` cores.
    Either way the cores are split into disjoint blocks, one per slot.
    """
    if trials_per_gpu < 1:
        raise ConfigError(f"hydra.launcher.trials_per_gpu must be >= 1, got {trials_per_gpu}")
    if parallel_trials is not None and parallel_trials < 1:
        raise ConfigError(
            f"hydra.launcher.parallel_trials must be >= 1 or null, got {parallel_trials}"
        )
    cpus = list(cpus) or [0]
    if gpus:
        capacity = len(gpus) * trials_per_gpu
        n_slots = parallel_trials or capacity
        if n_slots > capacity:
            raise ConfigError(
                f"hydra.launcher.parallel_trials={n_slots} needs more slots than "
                f"{len(gpus)} GPU(s) x trials_per_gpu={trials_per_gpu} = {capacity}; "
                "raise trials_per_gpu to pack more trials on each GPU"
            )
        slot_gpus = [str(gpus[i % len(gpus)]) for i in range(n_slots)]
    else:
        n_slots = parallel_trials or max(1, len(cpus) // CPUS_PER_CPU_TRIAL)
        slot_gpus = [""] * n_slots
    blocks = split_cpus(cpus, n_slots)
    return [TrialSlot(i, slot_gpus[i], blocks[i]) for i in range(n_slots)]


def split_cpus(cpus: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """`n` disjoint blocks of neighbouring cores; with fewer cores than blocks, one core each."""
    cpus = list(cpus)
    if n > len(cpus):
        return [(cpus[i % len(cpus)],) for i in range(n)]
    size, extra = divmod(len(cpus), n)
    blocks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        blocks.append(tuple(cpus[start:end]))
        start = end
    return blocks


def visible_gpus(gpus: str | Sequence[int | str] | None = "auto") -> list[str]:
    """GPU ids the launcher hands out; `auto` respects the caller's CUDA_VISIBLE_DEVICES."""
    if gpus is None:
        return []
    if gpus != "auto":
        if isinstance(gpus, str):
            raise ConfigError(
                f"hydra.launcher.gpus must be 'auto', a list of GPU ids or null, got {gpus!r}"
            )
        return [str(g) for g in gpus]
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        # a launcher started with CUDA_VISIBLE_DEVICES=2,3 hands out exactly GPUs 2 and 3
        return [g.strip() for g in inherited.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
