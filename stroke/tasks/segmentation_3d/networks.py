"""The 3-D segmentation networks, from MONAI by name: `unet`, `segresnet`, `dynunet`.

Their depth, strides per axis, kernel sizes and widths come from the volume plan
(stroke/data/volume_plan.py, nnU-Net's rules): a `DynUNet` takes them as they are (it is
MONAI's nnU-Net), a `UNet` takes the channels and the strides of its down-sampling steps,
a `SegResNet` its first width and one block group per level (it pools every axis).
`window_logits` runs one over a whole volume in patches, as validation, test and
prediction do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import DynUNet, SegResNet, UNet
from torch import nn

from stroke.errors import ConfigError

NETWORKS = ("unet", "segresnet", "dynunet")


def _as_lists(values: Sequence) -> list[list[int]]:
    return [[int(v)] * 3 if isinstance(v, int) else [int(x) for x in v] for v in values]


def create_volume_network(
    name: str,
    in_channels: int,
    out_channels: int,
    network_plan: Mapping[str, Any],
    channels: Sequence[int] | None = None,
    num_res_units: int = 1,
) -> nn.Module:
    """The MONAI network `name`, shaped by the plan's `strides`, `kernel_sizes`, `channels`.

    `channels` overrides the plan's widths (one per level, e.g. [8, 16, 32, 64] on a CPU).
    """
    if name not in NETWORKS:
        raise ConfigError(f"model.network must be one of {list(NETWORKS)}, got {name!r}")
    strides = _as_lists(network_plan["strides"])
    kernels = _as_lists(network_plan["kernel_sizes"])
    widths = [int(c) for c in (channels or network_plan["channels"])]
    if len(widths) < len(strides):
        raise ConfigError(
            f"model.channels={widths} gives {len(widths)} levels, but the plan's strides "
            f"have {len(strides)}; give one width per level"
        )
    widths = widths[: len(strides)]
    if name == "dynunet":
        return DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=widths,
            res_block=num_res_units > 0,
        )
    if name == "unet":
        return UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=widths,
            strides=[tuple(s) for s in strides[1:]],
            num_res_units=num_res_units,
        )
    levels = min(len(strides), 4)
    patch = network_plan.get("patch_size")
    if patch is not None and any(int(p) % 2 ** (levels - 1) for p in patch):
        raise ConfigError(
            f"model.network=segresnet pools every axis {levels - 1} times, so each side of the "
            f"patch must be a multiple of {2 ** (levels - 1)}; the plan's patch is {list(patch)} "
            "(use dynunet or unet for anisotropic plans, or data.plan_overrides.patch_size)"
        )
    return SegResNet(
        spatial_dims=3,
        init_filters=widths[0],
        in_channels=in_channels,
        out_channels=out_channels,
        blocks_down=(1, 2, 2, 4)[:levels],
        blocks_up=(1, 1, 1)[: levels - 1],
    )


def window_logits(
    net: nn.Module, volume: torch.Tensor, patch_size: Sequence[int], overlap: float, batch: int
) -> torch.Tensor:
    """A whole volume's logits (B x K x spatial) from patches blended with Gaussian weights."""
    return sliding_window_inference(
        volume,
        roi_size=[int(p) for p in patch_size],
        sw_batch_size=batch,
        predictor=net,
        overlap=overlap,
        mode="gaussian",
        padding_mode="constant",
    )
