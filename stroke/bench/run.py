"""`stroke-bench`'s run: measure the configured experiment's speed as one table of figures."""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stroke.bench.compare import loader_ceiling, timm_comparison
from stroke.bench.loops import (
    InMemoryBatches,
    Timing,
    lightning_loop,
    plain_loop,
    take_batches,
    trivial_network,
)
from stroke.bench.probes import (
    cache_pass_memory,
    loader_throughput,
    machine_description,
    peak_rss_mb,
)
from stroke.bench.startup import FRAMEWORK_IMPORTS, import_seconds, time_to_first_step
from stroke.build import build_datamodule, build_model, build_trainer
from stroke.data.cache import ImageCache
from stroke.data.datamodule import StrokeDataModule
from stroke.errors import ConfigError
from stroke.hardware import tune_backends

log = logging.getLogger("stroke.bench")
#: `bench.mode`: every figure (full), stroke-train against timm's benchmark method and the
#: device's peak (timm), or the loader's ceiling by worker count (loader).
MODES = ("full", "timm", "loader")


@dataclass
class Report:
    """The benchmark's figures as table rows (measure, value, note) under a title."""

    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, measure: str, value: float, unit: str, note: str = "") -> None:
        self.figures[key] = round(value, 4)
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.1f}"
        self.rows.append((measure, f"{shown} {unit}", note))

    def markdown(self) -> str:
        lines = [self.title, "", "| measure | value | note |", "| --- | ---: | --- |"]
        lines += [f"| {m} | {v} | {n} |" for m, v, n in self.rows]
        return "\n".join(lines)


class Bench:
    """One benchmark run of the experiment `cfg` describes (bench settings under `cfg.bench`)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.mode = str(cfg.bench.get("mode", "full"))
        if self.mode not in MODES:
            raise ConfigError(f"bench.mode must be one of {list(MODES)}, got {self.mode!r}")
        self.run_dir = Path(cfg.paths.output_dir)
        self.warmup = int(cfg.bench.warmup_steps)
        perf = cfg.get("callbacks", {}).get("performance") or {}
        self.channels_last = perf.get("channels_last", False)
        self.compile = perf.get("compile", False)
        probe = self.make_trainer([])
        if probe.world_size > 1:
            raise ConfigError("stroke-bench times one device; set trainer.devices=1")
        self.device, self.precision = probe.strategy.root_device, str(probe.precision)
        # process-wide flags the callback would set on the first fit: set for every loop alike
        tune_backends(self.device, perf.get("cudnn_benchmark", True) if perf else False)
        self.cached: StrokeDataModule = build_datamodule(cfg, cache=True)
        self.cached.setup("fit")  # the configured cache folder: warm for the start-up run
        if self.mode == "full":
            self.raw: StrokeDataModule = build_datamodule(cfg, cache=False)
            self.raw.setup("fit")
        self.items = [s.path for s in self.cached.samples]

    def make_trainer(self, extra_callbacks: list) -> L.Trainer:
        """The trainer `stroke-train` builds, with `extra_callbacks`, minus the sanity check."""
        return build_trainer(self.cfg, extra_callbacks, num_sanity_val_steps=0)

    def make_module(self) -> L.LightningModule:
        """The model `stroke-train` builds, initialized from the same seed every time."""
        L.seed_everything(self.cfg.seed, workers=True, verbose=False)
        return build_model(self.cfg, self.cached)

    def title(self) -> str:
        dm, cfg = self.cached, self.cfg
        return (
            f"stroke-bench: {cfg.model.backbone.name}, {dm.image_size} px x {dm.in_chans} ch, "
            f"batch {dm.batch_size}, {len(self.items)} images, augmentation "
            f"{HydraConfig.get().runtime.choices.get('augmentation')}, precision "
            f"{self.precision}, device {self.device}, {dm.num_workers} loader workers\n\n"
            f"machine: {machine_description(self.device)}"
        )

    # -- the figures ----------------------------------------------------------------------
    def loaders(self, report: Report) -> None:
        """Images per second from raw files and from the cache, and the cost of the build."""
        cold_dir = self.run_dir / "cold_cache"
        started = time.perf_counter()
        cold = ImageCache(self.cached.loader, self.items, cold_dir, progress=False)
        build_s, self.cache_mb = time.perf_counter() - started, cold.nbytes / 1e6
        shutil.rmtree(cold_dir, ignore_errors=True)
        batches, workers = int(self.cfg.bench.loader_batches), self.cached.num_workers
        raw = loader_throughput(self.raw.train_dataloader(), batches)
        cached = loader_throughput(self.cached.train_dataloader(), batches)
        report.add(
            "loader_raw_img_s",
            "loader: raw files",
            raw,
            "img/s",
            f"decode + resize + augment + tensor, {workers} workers",
        )
        report.add(
            "loader_cache_img_s",
            "loader: image cache",
            cached,
            "img/s",
            f"{cached / raw:.1f}x raw files: augment + tensor only",
        )
        report.add(
            "cache_build_img_s",
            "cache build (once per data and settings)",
            len(self.items) / build_s,
            "img/s",
            f"{len(self.items)} images, {self.cache_mb:.1f} MB, {build_s:.1f} s",
        )

    def training(self, report: Report) -> None:
        """Plain loop vs stroke-train's loop, in-memory tensors vs the real loaders."""
        bench = self.cfg.bench
        steps = min(int(bench.steps), self._batches_per_epoch() - self.warmup)
        if steps < 1:
            raise ConfigError(
                f"one training epoch has {self._batches_per_epoch()} batches; "
                f"bench.warmup_steps={self.warmup} leaves none to time"
            )
        count = self.warmup + steps
        batches = take_batches(self.cached.train_dataloader(), count, self.device)

        def plain(source) -> Timing:
            return plain_loop(
                self.make_module(),
                source,
                self.device,
                self.precision,
                self.warmup,
                steps,
                self.channels_last,
                self.compile,
            )

        def framework(**inputs) -> Timing:
            return lightning_loop(
                self.make_trainer, self.make_module(), self.warmup, steps, **inputs
            )

        loops: dict[str, Callable[[], Timing]] = {
            "plain_memory": lambda: plain(batches),
            "train_memory": lambda: framework(train_loader=InMemoryBatches(batches).loader()),
            "plain_cache": lambda: plain(self.cached.train_dataloader()),
            "train_cache": lambda: framework(datamodule=self.cached),
            "train_raw": lambda: framework(datamodule=self.raw),
        }
        statistic = str(bench.statistic)
        if statistic == "auto":
            statistic = "mean" if self.device.type == "cuda" else "median"
        if statistic not in ("mean", "median"):
            raise ConfigError(f"bench.statistic must be auto, mean or median, got {statistic!r}")
        pooled = {key: Timing() for key in loops}
        repeats = max(1, int(bench.repeats))
        for _ in range(repeats):  # interleaved: a burst of other load hits every loop alike
            for key, measure in loops.items():
                timing = measure()
                pooled[key].extend(timing)
                log.info("bench: %s %.2f img/s (median step)", key, timing.median_images_per_s)
        rates = {
            key: timing.median_images_per_s if statistic == "median" else timing.images_per_s
            for key, timing in pooled.items()
        }
        ratio = {key: rate / rates["train_memory"] for key, rate in rates.items()}
        report.add(
            "plain_memory_img_s",
            "train: plain PyTorch loop, tensors in memory",
            rates["plain_memory"],
            "img/s",
            f"{statistic} of {steps} steps x {repeats} runs, after {self.warmup} warm-up",
        )
        report.add(
            "train_memory_img_s",
            "train: stroke-train loop, tensors in memory",
            rates["train_memory"],
            "img/s",
            f"**{rates['train_memory'] / rates['plain_memory']:.3f}** of plain loop",
        )
        report.add(
            "plain_cache_img_s",
            "train: plain PyTorch loop, cached loader",
            rates["plain_cache"],
            "img/s",
            f"{rates['plain_cache'] / rates['plain_memory']:.3f} of plain in memory",
        )
        report.add(
            "train_cache_img_s",
            "train: stroke-train loop, cached loader",
            rates["train_cache"],
            "img/s",
            f"**{ratio['train_cache']:.3f}** of in memory",
        )
        report.add(
            "train_raw_img_s",
            "train: stroke-train loop, raw files (data.cache=false)",
            rates["train_raw"],
            "img/s",
            f"{ratio['train_raw']:.3f} of in memory",
        )
        self._batches, self._rates, self._repeats = batches, rates, repeats
        report.figures["framework_ratio"] = round(rates["train_memory"] / rates["plain_memory"], 4)
        report.figures["loader_ratio"] = round(ratio["train_cache"], 4)

    def overhead(self, report: Report) -> None:
        """stroke-train's own time per step, on a network with next to no work.

        What is left of a step is the loop itself (hooks, callbacks, logging), a few ms of
        CPU that other load on the machine hardly blurs; against this model's plain step it
        bounds the framework's ratio on any faster device.
        """
        count = min(
            int(self.cfg.bench.overhead_steps), self._batches_per_epoch(10**9) - self.warmup
        )
        batches = [self._batches[i % len(self._batches)] for i in range(self.warmup + count)]

        def module() -> L.LightningModule:
            module = self.make_module()
            module.net = trivial_network(self.cached.input_channels, self.cached.num_classes)
            return module

        plain, framework = Timing(), Timing()
        threads = torch.get_num_threads()
        # one thread: the loop's Python is serial anyway, and tiny ops split over threads
        # stall on each other whenever something else keeps a core busy
        torch.set_num_threads(1)
        try:
            for _ in range(self._repeats):
                args = (self.device, self.precision, self.warmup, count)
                plain.extend(plain_loop(module(), batches, *args))
                loader = InMemoryBatches(batches).loader()
                trained = lightning_loop(
                    self.make_trainer, module(), self.warmup, count, train_loader=loader
                )
                framework.extend(trained)
        finally:
            torch.set_num_threads(threads)
        overhead = statistics.median(framework.step_seconds) - statistics.median(plain.step_seconds)
        model_step = self.cached.batch_size / self._rates["plain_memory"]
        bound = model_step / (model_step + max(overhead, 0.0))
        report.add(
            "framework_ms_per_step",
            "train: stroke-train's own time per step (trivial network)",
            overhead * 1000,
            "ms",
            f"median of {count} steps x {self._repeats}, 1 thread; bounds the ratio at "
            f"{bound:.3f} for this model's {model_step * 1000:,.0f} ms plain step",
        )
        report.figures["framework_ratio_bound"] = round(bound, 4)

    def memory(self, report: Report) -> None:
        """Resident memory while this process reads the whole cache once."""
        memory = cache_pass_memory(self.cached.image_cache, self.items)
        report.add(
            "cache_pass_heap_mb",
            "memory: reading the whole cache, heap growth",
            memory["heap"],
            "MB",
            f"an in-memory cache would add its {self.cache_mb:.1f} MB of pixels",
        )
        report.add(
            "cache_mapped_mb",
            "memory: cache pages resident afterwards",
            memory["mapped"],
            "MB",
            f"of {self.cache_mb:.1f} MB; file-backed: shared by workers and runs, reclaimable",
        )

    def startup(self, report: Report, overrides: list[str]) -> None:
        """A fresh `stroke-train` to its first step, the floor its imports set, and its memory."""
        first = time_to_first_step(overrides, self.run_dir / "startup")
        floor = import_seconds()
        report.add(
            "startup_s",
            "start-up: `stroke-train` to its first training step",
            first["seconds"],
            "s",
            "fresh process, warm cache, sanity check included",
        )
        report.add(
            "import_floor_s",
            "start-up floor: python + framework imports",
            floor,
            "s",
            f"`python -c '{FRAMEWORK_IMPORTS}'`",
        )
        report.add(
            "startup_peak_rss_mb",
            "peak RSS: `stroke-train` at its first step",
            first["peak_rss_mb"],
            "MB",
            "the training process itself",
        )

    def peaks(self, report: Report) -> None:
        """Peak resident memory of this process (and of the GPU)."""
        report.add(
            "peak_rss_mb",
            "peak RSS: this benchmark process",
            peak_rss_mb(),
            "MB",
            "framework, the models timed in turn, in-memory batches, cache pages",
        )
        if self.device.type == "cuda":
            report.add(
                "peak_gpu_mb",
                "peak GPU memory: this benchmark process",
                torch.cuda.max_memory_allocated(self.device) / 2**20,
                "MB",
                "allocated by tensors (torch.cuda.max_memory_allocated)",
            )

    def _batches_per_epoch(self, batches: int | None = None) -> int:
        """Training batches of one epoch of `batches` (default: the real loader's), after
        `trainer.limit_train_batches`."""
        if batches is None:
            batches = len(self.cached.train_dataloader())
        limit = self.cfg.trainer.get("limit_train_batches")
        if isinstance(limit, int) and not isinstance(limit, bool):
            return min(batches, limit)
        if isinstance(limit, float):
            return int(batches * limit)
        return batches


def run_bench(cfg: DictConfig, overrides: list[str]) -> Report:
    """Every figure of the table `bench.mode` asks for, measured in this one run."""

    bench = Bench(cfg)
    report = Report(bench.title())
    if bench.mode == "timm":
        timm_comparison(bench, report)
    elif bench.mode == "loader":
        loader_ceiling(bench, report)
    else:
        bench.loaders(report)
        bench.training(report)
        bench.overhead(report)
        bench.memory(report)
        if cfg.bench.startup:
            bench.startup(report, overrides)
    bench.peaks(report)
    return report
