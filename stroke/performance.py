"""Speed settings that suit the hardware: precision, memory format, cudnn, torch.compile.

`auto_precision` backs the `${auto_precision:<accelerator>}` resolver of the trainer
configs; `PerformanceTuning` is the callback (callbacks/default.yaml, key `performance`)
that applies the rest when a fit starts. Both do nothing surprising on a CPU.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn

from stroke.errors import ConfigError

log = logging.getLogger(__name__)

_GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def auto_precision(accelerator: str = "auto") -> str:
    """Lightning precision for `accelerator`: bf16 autocast on GPUs that have it, else fp32.

    bf16 keeps fp32's range (no loss scaling) and runs on the tensor cores of Ampere and
    newer GPUs; older GPUs get fp16 autocast with a grad scaler; CPUs keep full precision,
    since most (without AMX) run bf16 slower than fp32.
    """
    if str(accelerator) not in _GPU_ACCELERATORS or not torch.cuda.is_available():
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


def tune_backends(device: torch.device, cudnn_benchmark: bool = True) -> None:
    """cuDNN autotuning and TF32 matmuls on CUDA, unless deterministic algorithms are asked for."""
    if device.type != "cuda":
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
    # TF32 for the fp32 matmuls left outside autocast; bf16/fp16 ones are unaffected
    torch.set_float32_matmul_precision("high")


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
