"""Self-configuration, nnU-Net style: a volume plan from a dataset fingerprint.

The rules are nnU-Net's (Isensee et al., Nature Methods 2021, and nnunetv2's
ExperimentPlanner), simplified where a stroke dataset does not need the general case:

- **target spacing**: the median spacing; when the scans are anisotropic (the coarsest axis
  over three times the finest) the coarse axis takes the 10th percentile of its spacings
  instead, so thin-slice scans are not thrown away to match thick ones;
- **patch**: starts at the median scan shape at that spacing and shrinks its largest side
  (in mm) until a batch of two fits the memory budget; the **batch** is then as many
  patches as fit, at least 2, and at most what covers 5% of the training voxels;
- **network**: one level per halving, an axis pooled only while its side stays >= 4
  voxels after pooling and its spacing within twice the finest (so a 5 mm axis is not
  pooled with a 1 mm one before the fine axes catch up); kernels 3 except 1 along an
  axis still over twice as coarse; widths 32 doubling per level up to 320; at most 6
  levels;
- **intensity (CT)**: clip to the training foreground's 0.5-99.5 percentiles, z-score with
  its mean and std.

The memory model is a rough count of the activations a U-Net keeps for its backward pass;
it is a sizing rule, not a measurement (stroke-bench measures).
"""

from __future__ import annotations

import math

import numpy as np

from stroke.data.volume_fingerprint import VolumeFingerprint
from stroke.data.volume_plan import VolumePlan
from stroke.errors import ConfigError
from stroke.hardware import gpu_memory_mb

#: the memory a plan sizes its batch for on a machine without a GPU (MB)
CPU_MEMORY_BUDGET_MB = 2048.0
#: the share of a GPU's memory a plan uses (the rest: CUDA context, allocator slack)
GPU_MEMORY_SHARE = 0.8
ANISOTROPY = 3.0
MIN_FEATURE_MAP = 4  # voxels a side keeps at the deepest level
MAX_LEVELS = 6
BASE_WIDTH, MAX_WIDTH = 32, 320
#: bytes kept per activation voxel and channel for backward (float32, two convolutions with
#: norm and non-linearity, encoder and decoder): a sizing constant, not a measurement
BYTES_PER_ACTIVATION = 4 * 12
MAX_DATASET_SHARE = 0.05


def default_memory_budget_mb() -> float:
    """80% of the GPU's memory, or CPU_MEMORY_BUDGET_MB without a GPU."""
    gpu = gpu_memory_mb()
    return gpu * GPU_MEMORY_SHARE if gpu else CPU_MEMORY_BUDGET_MB


def target_spacing(fp: VolumeFingerprint) -> list[float]:
    """The median spacing, with the anisotropic axis at its 10th percentile."""
    spacings = np.asarray(fp.spacings, dtype=np.float64)
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    others = [target[a] for a in range(3) if a != coarse]
    if target[coarse] > ANISOTROPY * min(target):
        fine = float(np.percentile(spacings[:, coarse], 10))
        target[coarse] = max(fine, max(others))
    return [round(float(v), 4) for v in target]


def network_topology(
    patch: list[int], spacing: list[float]
) -> tuple[list[list[int]], list[list[int]]]:
    """Strides and kernel sizes per level for a patch at a spacing (nnU-Net's rule)."""
    size = [float(p) for p in patch]
    current = list(spacing)

    def kernel() -> list[int]:
        finest = min(current)
        return [3 if s <= 2 * finest else 1 for s in current]

    strides, kernels = [[1, 1, 1]], [kernel()]
    while len(strides) < MAX_LEVELS:
        finest = min(current)
        pool = [
            2 if size[a] >= 2 * MIN_FEATURE_MAP and current[a] <= 2 * finest else 1
            for a in range(3)
        ]
        if pool == [1, 1, 1]:
            break
        size = [s / p for s, p in zip(size, pool, strict=True)]
        current = [s * p for s, p in zip(current, pool, strict=True)]
        strides.append(pool)
        kernels.append(kernel())
    return strides, kernels


def widths(levels: int) -> list[int]:
    return [min(BASE_WIDTH * 2**level, MAX_WIDTH) for level in range(levels)]


def activation_mb(patch: list[int], strides: list[list[int]], channels: list[int]) -> float:
    """The rough memory one patch costs in training (MB), summed over the levels."""
    voxels, factor, total = math.prod(patch), [1, 1, 1], 0.0
    for stride, width in zip(strides, channels, strict=True):
        factor = [f * s for f, s in zip(factor, stride, strict=True)]
        total += voxels / math.prod(factor) * width
    return total * BYTES_PER_ACTIVATION / 2**20


def _divisible(patch: list[int], strides: list[list[int]]) -> list[int]:
    """The patch rounded up so each side divides by the product of its strides."""
    factors = [math.prod(s[a] for s in strides) for a in range(3)]
    return [int(math.ceil(p / f) * f) for p, f in zip(patch, factors, strict=True)]


def plan_volumes(fp: VolumeFingerprint, memory_budget_mb: float | None = None) -> VolumePlan:
    """The plan for a fingerprint within `memory_budget_mb` (None: the device's)."""
    budget = float(memory_budget_mb) if memory_budget_mb is not None else default_memory_budget_mb()
    if not budget > 0:
        raise ConfigError(f"data.memory_budget_mb={memory_budget_mb!r}: expected a number > 0 (MB)")
    spacing = target_spacing(fp)
    shapes = np.asarray(fp.shapes, dtype=np.float64) * np.asarray(fp.spacings) / spacing
    median = [max(1, int(round(v))) for v in np.median(shapes, axis=0)]
    patch = list(median)
    while True:
        strides, kernels = network_topology(patch, spacing)
        channels = widths(len(strides))
        candidate = _divisible(patch, strides)
        shrinkable = [a for a in range(3) if patch[a] > 8]
        if 2 * activation_mb(candidate, strides, channels) <= budget or not shrinkable:
            break
        # shrink the side that is largest in mm, by about 10% (at least one voxel)
        axis = max(shrinkable, key=lambda a: patch[a] * spacing[a])
        patch[axis] = max(8, patch[axis] - max(1, patch[axis] // 10))
    patch = candidate
    per_patch = activation_mb(patch, strides, channels)
    batch = max(2, int(budget // per_patch))
    dataset_voxels = float(np.prod(shapes, axis=1).sum())
    batch = max(2, min(batch, int(MAX_DATASET_SHARE * dataset_voxels / math.prod(patch)) or 2))
    stats = fp.intensity_statistics()
    intensity = {
        "scheme": "ct",
        "clip": [round(stats["percentile_00_5"], 3), round(stats["percentile_99_5"], 3)],
        "mean": round(stats["mean"], 4),
        "std": round(stats["std"], 4),
    }
    return VolumePlan(
        spacing=spacing,
        patch_size=patch,
        batch_size=batch,
        strides=strides,
        kernel_sizes=kernels,
        channels=channels,
        intensity=intensity,
        median_shape=median,
        lesion_classes=sorted(fp.lesion_voxels),
        memory_budget_mb=round(budget, 1),
    )
