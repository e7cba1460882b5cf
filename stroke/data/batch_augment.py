"""Augmentation of whole batches on the training device: for when the CPUs cannot keep up.

`augmentation=gpu` replaces the per-image albumentations policy (run by the loader's
CPU workers) with `BatchAugmentation`, applied to each training batch after it reaches
the device (the datamodule's `on_after_batch_transfer`). Every image draws its own
parameters, as in the per-image policies: a left-right flip, an affine (rotation, scale,
shift; what moves in from outside is black, i.e. air) resampled bilinearly in one
`grid_sample`, brightness and contrast, and Gaussian noise. CLAHE has no batched
equivalent and is left out. Validation and test batches are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stroke.errors import ConfigError


def _probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"augmentation.{name} must be in [0, 1], got {value!r}")
    return float(value)


def _range(name: str, value: Sequence[float], low: float | None = None) -> tuple[float, float]:
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"augmentation.{name} must be [min, max], got {value!r}") from err
    if first > second or (low is not None and first < low):
        bound = f" with min >= {low}" if low is not None else ""
        raise ConfigError(f"augmentation.{name} must be [min, max]{bound}, got {value!r}")
    return first, second


class BatchAugmentation(nn.Module):
    """Random flips, affines, brightness/contrast and noise for a batch of images, per image.

    Called on normalised N x C x H x W batches with the preprocessing's `mean` and `std`
    (per channel): it works on the 0..1 pixel scale in between, so its settings mean what
    the albumentations policies' do (`brightness: 0.1` is a tenth of the full range).
    """

    def __init__(
        self,
        flip_p: float = 0.5,
        affine_p: float = 0.7,
        rotate: Sequence[float] = (-15.0, 15.0),
        scale: Sequence[float] = (0.9, 1.1),
        translate: Sequence[float] = (-0.05, 0.05),
        brightness_contrast_p: float = 0.5,
        brightness: float = 0.1,
        contrast: float = 0.1,
        noise_p: float = 0.2,
        noise_std: Sequence[float] = (0.01, 0.03),
    ) -> None:
        super().__init__()
        self.flip_p = _probability("flip_p", flip_p)
        self.affine_p = _probability("affine_p", affine_p)
        self.rotate = _range("rotate", rotate)
        self.scale = _range("scale", scale, low=1e-3)
        self.translate = _range("translate", translate)
        self.brightness_contrast_p = _probability("brightness_contrast_p", brightness_contrast_p)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.noise_p = _probability("noise_p", noise_p)
        self.noise_std = _range("noise_std", noise_std, low=0.0)

    def forward(
        self, images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> torch.Tensor:
        """The augmented batch, normalised like the input."""
        n, channels = images.shape[:2]
        mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        pixels = images * std_t + mean_t  # 0..1
        pixels = self._geometry(pixels)
        pixels = self._intensity(pixels)
        return (pixels.clamp(0.0, 1.0) - mean_t) / std_t

    def _chosen(self, n: int, p: float, device: torch.device) -> torch.Tensor:
        return torch.rand(n, device=device) < p

    def _uniform(self, n: int, bounds: tuple[float, float], device: torch.device) -> torch.Tensor:
        return torch.empty(n, device=device).uniform_(*bounds)

    def _geometry(self, pixels: torch.Tensor) -> torch.Tensor:
        """Flip and affine in one resampling (flip alone is exact: only the sign of x)."""
        n, device = pixels.shape[0], pixels.device
        flip = torch.where(self._chosen(n, self.flip_p, device), -1.0, 1.0)
        affine = self._chosen(n, self.affine_p, device)
        angle = torch.where(affine, self._uniform(n, self.rotate, device), 0.0) * math.pi / 180
        zoom = torch.where(affine, self._uniform(n, self.scale, device), 1.0)
        # grid coordinates run over [-1, 1]: a shift of a fraction f of the side is 2f
        shift_x = torch.where(affine, self._uniform(n, self.translate, device), 0.0) * 2
        shift_y = torch.where(affine, self._uniform(n, self.translate, device), 0.0) * 2
        if not bool(affine.any()) and not bool((flip < 0).any()):
            return pixels
        # output -> input sampling: inverse of zoom, rotation and shift, then the flip
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos * flip, sin, -(cos * shift_x + sin * shift_y)], 1),
                torch.stack([-sin * flip, cos, sin * shift_x - cos * shift_y], 1),
            ],
            1,
        ).to(pixels.dtype)
        grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
        moved = F.grid_sample(pixels, grid, "bilinear", "zeros", align_corners=False)
        # images left alone are kept bit for bit, not resampled
        untouched = (~affine & (flip > 0)).view(-1, 1, 1, 1)
        return torch.where(untouched, pixels, moved)

    def _intensity(self, pixels: torch.Tensor) -> torch.Tensor:
        n, device = pixels.shape[0], pixels.device
        jitter = self._chosen(n, self.brightness_contrast_p, device)
        alpha = 1.0 + self._uniform(n, (-self.contrast, self.contrast), device)
        beta = self._uniform(n, (-self.brightness, self.brightness), device)
        alpha = torch.where(jitter, alpha, 1.0).view(-1, 1, 1, 1).to(pixels.dtype)
        beta = torch.where(jitter, beta, 0.0).view(-1, 1, 1, 1).to(pixels.dtype)
        pixels = pixels * alpha + beta
        noisy = self._chosen(n, self.noise_p, device)
        sigma = torch.where(noisy, self._uniform(n, self.noise_std, device), 0.0)
        if bool(noisy.any()):
            pixels = pixels + torch.randn_like(pixels) * sigma.view(-1, 1, 1, 1).to(pixels.dtype)
        return pixels
