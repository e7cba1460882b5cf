"""Loader throughput and memory figures of `stroke-bench`."""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from stroke.data.cache import IMAGES_FILE, ImageCache
from stroke.hardware import available_cpus


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
    the same file and dropped by the OS under pressure, unlike anonymous memory. Empty
    where /proc is missing (not Linux).
    """
    fields = {"RssAnon": "anon", "RssFile": "file"}
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                values[fields[name]] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM on Linux, getrusage elsewhere).

    Not getrusage on Linux: a process started by fork + exec inherits its parent's peak there.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def mapped_resident_mb(path: Path) -> float:
    """MB of the file `path` resident in this process's memory maps (Linux; NaN elsewhere)."""
    target, total_kb, inside = str(Path(path).resolve()), 0, False
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5] == target
        elif inside and fields[0] == "Rss:":
            total_kb += int(fields[1])
    return total_kb / 1024


def cache_pass_memory(cache: ImageCache, items: Sequence[Any]) -> dict[str, float]:
    """Memory while this process reads every cached image once, in MB.

    `heap`: growth of anonymous memory (what an in-memory cache would add: the pixels);
    `mapped`: the cache file's pages resident in this process afterwards (file-backed:
    shared with workers and other runs through the page cache, and reclaimable).
    """
    before = resident_memory()
    for item in items:
        cache(item)
    after = resident_memory()
    return {
        "heap": after.get("anon", float("nan")) - before.get("anon", float("nan")),
        "mapped": mapped_resident_mb(cache.path / IMAGES_FILE),
    }


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
    cpus = available_cpus()
    text = f"{cpu}, {cpus} CPUs available"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return f"{text}, torch {torch.__version__}"
