"""Loader throughput and memory figures of `stroke-bench`."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def loader_throughput(loader: Iterable, batches: int) -> float:
    """Images per second a DataLoader delivers, after its first batch (worker start-up)."""
    iterator = iter(loader)
    next(iterator)
    images, started = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(iterator)
        except StopIteration:  # a short epoch: carry on with the next one
            iterator = iter(loader)
            x, _ = next(iterator)
        images += len(x)
    seconds = time.perf_counter() - started
    del iterator
    return images / seconds


def resident_memory() -> dict[str, float]:
    """This process's resident memory in MB: anonymous (heap) and file-backed (mapped files).

    Memory-mapped cache pages count as file-backed: shared with other processes reading
    the same file and dropped by the OS under pressure, unlike anonymous memory.
    """
    fields = {"RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                values[fields[name]] = int(rest.split()[0]) / 1024
    except OSError:  # not Linux: peak only
        values["peak"] = peak_rss_mb()
    return values


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory in MB of this process (or of its largest finished child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def cache_pass_memory(cache: Callable[[Any], Any], items: Sequence[Any]) -> dict[str, float]:
    """Resident memory growth (MB) while reading every cached image once, in this process."""
    before = resident_memory()
    for item in items:
        cache(item)
    after = resident_memory()
    return {key: after[key] - before[key] for key in ("anon", "file") if key in after}


def machine_description(device: torch.device) -> str:
    """CPU model and count available to this process, GPU name, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    text = f"{cpu}, {cpus} CPUs available"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return f"{text}, torch {torch.__version__}"
