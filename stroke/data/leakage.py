"""Leakage check: the same image (re-encoded, resized) in two splits inflates every metric.

Each image is decoded once, as the model sees it, and summarised by a 256-bit perceptual
hash (pHash) and a 16 x 16 thumbnail. A pair from different splits is a near duplicate
when the hashes differ in at most `max_distance` bits AND the thumbnails correlate at
`min_correlation` or more. The hash alone cannot tell two similar brains apart (two
patients' vertex slices can be 8 bits apart), the correlation alone is too slow to
compare every pair; together they find a JPEG re-encode at another size and leave
distinct slices and distinct patients alone.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import imagehash
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from stroke.data.samples import SPLITS, Sample
from stroke.errors import DatasetError
from stroke.io import atomic_writer

log = logging.getLogger(__name__)

LEAKAGE_MODES = ("warn", "error", "off")
#: pHash side: 16 x 16 = 256 bits.
HASH_SIZE = 16
#: Bits two hashes may differ by (re-encoded and resized copies measured at <= 8).
MAX_HASH_DISTANCE = 12
#: Thumbnail correlation a copy keeps (measured >= 0.998; other patients <= 0.99).
MIN_CORRELATION = 0.995
_THUMB = 16
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


@dataclass(frozen=True)
class NearDuplicate:
    """Two images in different splits that look the same."""

    first: Sample
    second: Sample
    hash_distance: int
    correlation: float

    def describe(self) -> str:
        """One line naming both files (and slices) with their splits."""
        return (
            f"{_name(self.first)} [{self.first.split}] ~ {_name(self.second)} "
            f"[{self.second.split}] (hash distance {self.hash_distance}, "
            f"correlation {self.correlation:.4f})"
        )


def image_signature(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The packed pHash bits (32 bytes) and unit-norm 16 x 16 thumbnail of a uint8 HxWxC image."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    bits = imagehash.phash(Image.fromarray(gray), hash_size=HASH_SIZE).hash
    thumb = cv2.resize(gray.astype(np.float32), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
    thumb = thumb.ravel() - thumb.mean()
    norm = float(np.linalg.norm(thumb))
    # a blank image has no structure to match: a zero thumbnail correlates with nothing
    thumb = thumb / norm if norm > 1e-3 else np.zeros_like(thumb)
    return np.packbits(bits.ravel()), thumb.astype(np.float32)


def hash_distance(bits_a: np.ndarray, bits_b: np.ndarray) -> int:
    """Bits in which two packed hashes differ (Hamming distance)."""
    return int(_POPCOUNT[np.bitwise_xor(bits_a, bits_b)].sum())


class _Signatures(Dataset):
    def __init__(self, samples: Sequence[Sample], loader: Callable[[Sample], np.ndarray]) -> None:
        self.samples, self.loader = list(samples), loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        bits, thumb = image_signature(self.loader(self.samples[index]))
        return torch.from_numpy(bits), torch.from_numpy(thumb)


def signatures(
    samples: Sequence[Sample],
    loader: Callable[[Sample], np.ndarray],
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Hash bits (N x 32 uint8) and thumbnails (N x 256) of every sample, decoded in parallel."""
    batches = DataLoader(_Signatures(samples, loader), batch_size=64, num_workers=num_workers)
    show = progress and len(samples) >= 500
    parts = list(tqdm(batches, desc="leakage check", unit="batch", disable=not show))
    if not parts:
        return np.zeros((0, HASH_SIZE * HASH_SIZE // 8), np.uint8), np.zeros((0, _THUMB**2))
    return (
        torch.cat([b for b, _ in parts]).numpy(),
        torch.cat([t for _, t in parts]).numpy(),
    )


def find_near_duplicates(
    samples: Sequence[Sample],
    bits: np.ndarray,
    thumbs: np.ndarray,
    max_distance: int = MAX_HASH_DISTANCE,
    min_correlation: float = MIN_CORRELATION,
) -> list[NearDuplicate]:
    """Pairs of samples from different splits whose signatures match, closest first."""
    index_of = {split: [i for i, s in enumerate(samples) if s.split == split] for split in SPLITS}
    found = []
    for split_a, split_b in combinations(SPLITS, 2):
        a_idx, b_idx = np.asarray(index_of[split_a]), np.asarray(index_of[split_b])
        if len(a_idx) == 0 or len(b_idx) == 0:
            continue
        # compare in chunks so a 100k-image dataset does not need a 100k x 100k matrix
        chunk = max(1, 2**22 // (len(b_idx) * bits.shape[1]))
        for start in range(0, len(a_idx), chunk):
            rows = a_idx[start : start + chunk]
            xor = np.bitwise_xor(bits[rows][:, None, :], bits[b_idx][None, :, :])
            distance = _POPCOUNT[xor].sum(axis=2)
            for r, c in zip(*np.nonzero(distance <= max_distance), strict=True):
                i, j = int(rows[r]), int(b_idx[c])
                correlation = float(np.dot(thumbs[i], thumbs[j]))
                if correlation >= min_correlation:
                    found.append(
                        NearDuplicate(samples[i], samples[j], int(distance[r, c]), correlation)
                    )
    return sorted(found, key=lambda d: (d.hash_distance, -d.correlation))


def check_leakage(
    samples: Sequence[Sample],
    loader: Callable[[Sample], np.ndarray],
    mode: str | bool = "warn",
    num_workers: int = 0,
) -> list[NearDuplicate]:
    """Find near duplicates across splits; log them (`warn`) or raise (`error`)."""
    mode = resolve_leakage_mode(mode)
    if mode == "off":
        return []
    bits, thumbs = signatures(samples, loader, num_workers)
    duplicates = find_near_duplicates(samples, bits, thumbs)
    if not duplicates:
        log.info("leakage check: no near-duplicate images across splits (%d images)", len(samples))
        return []
    shown = "\n  ".join(d.describe() for d in duplicates[:10])
    more = f"\n  ... and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
    message = (
        f"{len(duplicates)} near-duplicate image pair(s) across train/val/test: the same "
        f"image in two splits inflates the metrics:\n  {shown}{more}"
    )
    if mode == "error":
        raise DatasetError(
            f"{message}\nremove the copies (or give them one patient id); "
            "data.leakage=warn only reports them"
        )
    log.warning("%s\n(data.leakage=error makes this an error)", message)
    return duplicates


def resolve_leakage_mode(mode: str | bool | None) -> str:
    """`warn`, `error` or `off` (YAML reads a bare `off` as False, which means off too)."""
    if mode is False or mode is None:
        return "off"
    if isinstance(mode, str) and mode.lower() in LEAKAGE_MODES:
        return mode.lower()
    raise DatasetError(f"data.leakage must be one of {list(LEAKAGE_MODES)}, got {mode!r}")


def write_leakage_csv(duplicates: Sequence[NearDuplicate], path: Path) -> None:
    """Record the pairs found, one row each, for the run directory."""
    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "path_a",
                "slice_a",
                "split_a",
                "path_b",
                "slice_b",
                "split_b",
                "hash_distance",
                "correlation",
            ]
        )
        for d in duplicates:
            writer.writerow(
                [
                    d.first.path.as_posix(),
                    _slice(d.first),
                    d.first.split,
                    d.second.path.as_posix(),
                    _slice(d.second),
                    d.second.split,
                    d.hash_distance,
                    f"{d.correlation:.4f}",
                ]
            )


def _slice(sample: Sample) -> str:
    return "" if sample.slice_index is None else str(sample.slice_index)


def _name(sample: Sample) -> str:
    suffix = f"[slice {sample.slice_index}]" if sample.slice_index is not None else ""
    return f"{sample.path}{suffix}"
