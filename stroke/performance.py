"""Speed settings applied to a model when a fit starts: memory format, cuDNN, torch.compile.

`PerformanceTuning` is the callback (callbacks/default.yaml, key `performance`); the policy
it follows (what `auto` means on this machine) is `stroke.hardware`'s. It does nothing
surprising on a CPU.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn

from stroke.hardware import tune_backends, use_channels_last

log = logging.getLogger(__name__)


def tune_module(
    net: nn.Module,
    device: torch.device,
    channels_last: bool | str = "auto",
    compile: bool = False,
    compile_mode: str | None = None,
) -> nn.Module:
    """Apply the memory format and compilation to `net` in place (also used by `stroke-bench`).

    `nn.Module.compile` compiles in place, so parameter names and checkpoints stay those
    of the uncompiled network.
    """
    if use_channels_last(channels_last, device):
        net.to(memory_format=torch.channels_last)
    if compile:
        net.compile(mode=compile_mode)
    return net


class PerformanceTuning(L.Callback):
    """Channels-last, cuDNN benchmark, TF32 and optional `torch.compile` for the model's `net`.

    channels_last: `auto` (NHWC on CUDA), true or false.
    compile: compile the backbone with `torch.compile` (first steps are slower, later ones
        faster; worth it for long GPU runs). compile_mode: e.g. `max-autotune`.
    cudnn_benchmark: let cuDNN time its convolution algorithms for the fixed input size
        (off when `trainer.deterministic=true`).
    """

    def __init__(
        self,
        channels_last: bool | str = "auto",
        compile: bool = False,
        compile_mode: str | None = None,
        cudnn_benchmark: bool = True,
    ) -> None:
        use_channels_last(channels_last, torch.device("cpu"))  # validate early
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode
        self.cudnn_benchmark = cudnn_benchmark

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        device = trainer.strategy.root_device
        tune_backends(device, self.cudnn_benchmark)
        if stage != "fit":
            return
        net = getattr(pl_module, "net", pl_module)
        tune_module(net, device, self.channels_last, self.compile, self.compile_mode)
        log.info(
            "performance: device %s, channels_last %s, compile %s, cudnn.benchmark %s",
            device,
            use_channels_last(self.channels_last, device),
            self.compile,
            torch.backends.cudnn.benchmark,
        )
