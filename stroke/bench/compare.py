"""`stroke-bench bench.mode=timm|loader`: stroke-train against outside yardsticks.

`timm`: `stroke-train`'s training throughput against a training benchmark run the way
timm's `benchmark.py --bench train` runs one (its method, reimplemented: that script is
not part of the timm package): the same network, batch, resolution, precision and memory
format, synthetic inputs made once on the device, fresh random targets each step, SGD
(timm's `create_optimizer_v2("sgd")`), cross-entropy, warm-up steps, then every step
timed to its synchronisation. Beside it, the network's measured FLOPs per training image
and the device's peak where it is known.

`loader`: the cached loader's ceiling (images/s delivered with no model to feed) for each
worker count in `bench.workers`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from stroke.bench.loops import (
    InMemoryBatches,
    Timing,
    autocast_for,
    lightning_loop,
    synchronize,
    take_batches,
)
from stroke.bench.probes import loader_throughput
from stroke.build import build_datamodule
from stroke.errors import ConfigError
from stroke.models.factory import create_model
from stroke.performance import tune_module

if TYPE_CHECKING:
    from stroke.bench.run import Bench, Report

#: Dense tensor-core peaks in TFLOP/s from the vendors' data sheets, by device name
#: (longest names first, so "A100" is not read as "A10"): (bf16/fp16, tf32).
PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (989.4, 494.7),
    "H100 PCIe": (756.0, 378.0),
    "H100": (989.4, 494.7),
    "A100": (312.0, 156.0),
    "L40S": (362.1, 183.0),
    "A10G": (70.0, 35.0),
    "A10": (125.0, 62.5),
    "L4": (121.0, 60.0),
}


def peak_tflops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s at this precision or None, the device's name) from PEAK_TFLOPS."""
    if device.type != "cuda":
        return None, "CPU"
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            half, tf32 = PEAK_TFLOPS[key]
            return (tf32 if str(precision).startswith("32") else half), name
    return None, name


def training_flops(net: nn.Module, in_chans: int, image_size: int) -> float:
    """FLOPs of one training image (forward and backward), counted on a CPU copy."""
    from torch.utils.flop_counter import FlopCounterMode

    clone = copy.deepcopy(net).float().cpu().train()
    images = torch.randn(2, in_chans, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        clone(images).float().sum().backward()
    return counter.get_total_flops() / 2


def timm_method_loop(
    net: nn.Module,
    num_classes: int,
    batch_shape: tuple[int, ...],
    device: torch.device,
    precision: str,
    channels_last: bool | str,
    warmup: int,
    steps: int,
) -> Timing:
    """Training steps as timm's benchmark times them (see the module docstring)."""
    from timm.optim import create_optimizer_v2

    dtype, _ = autocast_for(precision, device)
    net = tune_module(net.to(device), device, channels_last).train()
    nhwc = net_uses_nhwc(net)
    memory_format = torch.channels_last if nhwc else torch.contiguous_format
    inputs = torch.randn(batch_shape, device=device).contiguous(memory_format=memory_format)
    optimizer = create_optimizer_v2(net, opt="sgd", lr=1e-4)
    criterion = nn.CrossEntropyLoss().to(device)
    timing = Timing()
    for step in range(warmup + steps):
        optimizer.zero_grad()
        started = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            output = net(inputs)
            target = torch.empty(len(inputs), dtype=torch.long, device=device)
            criterion(output, target.random_(num_classes)).backward()
        optimizer.step()
        synchronize(device)
        if step >= warmup:
            timing.add(len(inputs), time.perf_counter() - started)
    return timing


def net_uses_nhwc(net: nn.Module) -> bool:
    """Whether the network's convolution weights are channels-last (tune_module made them so)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.is_contiguous(memory_format=torch.channels_last)
    return False


def timm_comparison(bench: Bench, report: Report) -> None:
    """stroke-train's loop (tensors in memory, and the cached loader) against timm's method."""

    dm, cfg = bench.cached, bench.cfg
    # the stroke-train loops run inside one epoch, as stroke-bench's full mode does
    steps = min(int(cfg.bench.steps), bench._batches_per_epoch() - bench.warmup)
    if steps < 1:
        raise ConfigError(
            f"one training epoch has {bench._batches_per_epoch()} batches; "
            f"bench.warmup_steps={bench.warmup} leaves none to time"
        )
    batch_shape = (dm.batch_size, dm.input_channels, dm.image_size, dm.image_size)
    backbone = dict(cfg.model.backbone)
    batches = take_batches(dm.train_dataloader(), bench.warmup + steps, bench.device)
    rates: dict[str, Timing] = {"timm": Timing(), "memory": Timing(), "cache": Timing()}
    device, warmup = bench.device, bench.warmup
    for _ in range(max(1, int(cfg.bench.repeats))):  # interleaved: other load hits all alike
        net = create_model(num_classes=dm.num_classes, in_chans=dm.input_channels, **backbone)
        precision, channels_last = bench.precision, bench.channels_last
        reference = timm_method_loop(
            net, dm.num_classes, batch_shape, device, precision, channels_last, warmup, steps
        )
        rates["timm"].extend(reference)
        loader = InMemoryBatches(batches).loader()
        module = bench.make_module()
        rates["memory"].extend(
            lightning_loop(bench.make_trainer, module, warmup, steps, train_loader=loader)
        )
        module = bench.make_module()
        rates["cache"].extend(
            lightning_loop(bench.make_trainer, module, warmup, steps, datamodule=dm)
        )
    statistic = "mean" if bench.device.type == "cuda" else "median"
    speed = {
        key: t.images_per_s if statistic == "mean" else t.median_images_per_s
        for key, t in rates.items()
    }
    timed = f"SGD; {statistic} of {steps} steps x {cfg.bench.repeats} runs"
    report.add("timm_img_s", "train: timm's benchmark method", speed["timm"], "img/s", timed)
    for key, measure in (("memory", "tensors in memory"), ("cache", "cached loader")):
        ratio = speed[key] / speed["timm"]
        name, note = f"train: stroke-train loop, {measure}", f"**{ratio:.3f}** of timm's method"
        report.add(f"train_{key}_img_s", name, speed[key], "img/s", note)
        report.figures[f"timm_ratio_{key}"] = round(ratio, 4)
    flops = training_flops(bench.make_module().net, dm.input_channels, dm.image_size)
    name, note = "model: FLOPs per training image", "forward + backward, torch.utils.flop_counter"
    report.add("train_gflop_per_img", name, flops / 1e9, "GFLOP", note)
    achieved = flops * speed["memory"] / 1e12
    peak, name = peak_tflops(device, bench.precision)
    note = (
        f"{achieved / peak:.1%} of {name}'s {peak:g} TFLOP/s"
        if peak
        else f"no peak known for {name}"
    )
    name = "model FLOP rate, stroke-train in memory"
    report.add("achieved_gflops", name, achieved * 1000, "GFLOP/s", note)
    if peak:
        report.figures["peak_fraction"] = round(achieved / peak, 4)


def loader_ceiling(bench: Bench, report: Report) -> None:
    """Images per second the cached training loader delivers with each worker count."""
    cfg, batches = bench.cfg, int(bench.cfg.bench.loader_batches)
    for workers in [int(w) for w in cfg.bench.workers]:
        dm = build_datamodule(cfg, cache=True, num_workers=workers)
        dm.setup("fit")
        rate = loader_throughput(dm.train_dataloader(), batches)
        where = "in the loader" if dm.train_transform is not None else "not in the loader"
        note = f"{batches} batches of {dm.batch_size}, augmentation {where}"
        name = f"loader ceiling: {workers} workers"
        report.add(f"loader_{workers}w_img_s", name, rate, "img/s", note)
