"""What this machine offers and how `stroke` uses it: CPUs, loader workers, device, precision.

Every command takes its hardware policy from here, so a change of policy (say, how many
workers `num_workers: auto` means) is made once. The speed settings applied to a model
during a fit live in `stroke.performance`; dividing a machine between parallel sweep
trials lives in `stroke.sweep.devices`.
"""

from __future__ import annotations

import os

import torch

from stroke.errors import ConfigError

#: Accelerator names under which a CUDA GPU is used when there is one.
_GPU_ACCELERATORS = ("auto", "gpu", "cuda")
#: Worker processes and decode threads are capped: beyond 8 they compete for memory bandwidth.
MAX_WORKERS = 8


def usable_cpu_ids() -> list[int]:
    """Core ids this process may run on (respects taskset and cgroup affinity)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning, but the count still divides threads
        return list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """How many CPUs this process may run on (unlike os.cpu_count, respects affinity)."""
    return len(usable_cpu_ids())


def has_cuda() -> bool:
    """Whether a CUDA GPU is visible to this process."""
    return torch.cuda.is_available()


def gpu_memory_mb(index: int = 0) -> float | None:
    """The memory of CUDA GPU `index` in MB, None without one (what a 3-D plan sizes for)."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(index).total_memory / 2**20


def resolve_num_workers(num_workers: int | str, cached: bool = False, key: str = "data") -> int:
    """`auto` leaves one CPU to the training loop and uses the rest (at most 8) for decoding.

    Except on a machine without a GPU when images come from the cache: there the model's
    threads already use every core, a cached batch costs about 1% of a CPU training step,
    and worker processes would only take cores from the model (see experiments/benchmarks.md).
    """
    if num_workers == "auto":
        if cached and not has_cuda():
            return 0
        return max(0, min(MAX_WORKERS, available_cpus() - 1))
    if isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 0:
        return num_workers
    raise ConfigError(f"{key}.num_workers must be 'auto' or an integer >= 0, got {num_workers!r}")


def decode_threads() -> int:
    """Threads that decode images when a cache is built (Pillow and OpenCV release the GIL)."""
    return max(1, min(MAX_WORKERS, available_cpus()))


def resolve_device(device: str) -> str:
    """`auto`: the GPU when there is one, else the CPU; any other value is passed on."""
    if device == "auto":
        return "cuda" if has_cuda() else "cpu"
    return str(device)


def pin_memory(setting: bool | None) -> bool:
    """Page-locked loader memory: worth it only when batches are copied to a GPU."""
    return has_cuda() if setting is None else bool(setting)


def auto_precision(accelerator: str = "auto") -> str:
    """Lightning precision for `accelerator`: bf16 autocast on GPUs that have it, else fp32.

    bf16 keeps fp32's range (no loss scaling) and runs on the tensor cores of Ampere and
    newer GPUs; older GPUs get fp16 autocast with a grad scaler; CPUs keep full precision,
    since most (without AMX) run bf16 slower than fp32.
    """
    if str(accelerator) not in _GPU_ACCELERATORS or not has_cuda():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"


def use_channels_last(setting: bool | str, device: torch.device) -> bool:
    """Whether `channels_last: auto|true|false` means NHWC on `device` (auto: on CUDA only)."""
    if setting == "auto":
        # cuDNN's tensor-core convolutions want NHWC; on CPU (oneDNN) it measured no faster
        return device.type == "cuda"
    if isinstance(setting, bool):
        return setting
    raise ConfigError(
        f"callbacks.performance.channels_last must be auto, true or false, got {setting!r}"
    )


def tune_backends(device: torch.device, cudnn_benchmark: bool = True) -> None:
    """cuDNN autotuning and TF32 matmuls on CUDA, unless deterministic algorithms are asked for."""
    if device.type != "cuda":
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
    # TF32 for the fp32 matmuls left outside autocast; bf16/fp16 ones are unaffected
    torch.set_float32_matmul_precision("high")
