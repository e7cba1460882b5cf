"""Leakage check: the same image (re-encoded, resized) in two splits inflates every metric.

Each image is decoded once, as the model sees it, and summarised by a 256-bit perceptual
hash (pHash) and a 16 x 16 thumbnail. A pair from different splits is a near duplicate
when the hashes differ in at most `max_distance` bits AND the thumbnails correlate at
`min_correlation` or more. The hash alone cannot tell two similar brains apart (two
patients' vertex slices can be 8 bits apart), the correlation alone is too slow to
compare every pair; together they find a JPEG re-encode at another size and leave
distinct slices and distinct patients alone.

The hash search does not compare every pair: a multi-index on hash bands
(stroke.data.hash_index) finds the same pairs as the exhaustive comparison from the
pairs that share a band. For cached images, the signatures and every pair within the
hash distance are stored beside the image cache (stroke.data.leakage_store), so a later
run on the dataset hashes and searches nothing: it picks the pairs its split separates.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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

from stroke.data.hash_index import exhaustive_pairs_within, hamming_distances, pairs_within
from stroke.data.samples import SPLITS, Sample
from stroke.errors import DatasetError
from stroke.hardware import decode_threads
from stroke.io import atomic_writer

log = logging.getLogger(__name__)

LEAKAGE_MODES = ("warn", "error", "drop", "off")
#: pHash side: 16 x 16 = 256 bits.
HASH_SIZE = 16
#: Bits two hashes may differ by (re-encoded and resized copies measured at <= 8).
MAX_HASH_DISTANCE = 12
#: Thumbnail correlation a copy keeps (measured >= 0.998; other patients <= 0.99).
MIN_CORRELATION = 0.995
_THUMB = 16
#: How pairs within MAX_HASH_DISTANCE are found: the band index, or every pair (reference).
SEARCH_METHODS = {"index": pairs_within, "exhaustive": exhaustive_pairs_within}
#: Images hashed by one thread task (amortises the task's overhead).
_HASH_CHUNK = 256
#: Rows of thumbnails scanned at once for blank images (bounds a temporary array).
_SCAN_ROWS = 1 << 16


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
    return int(hamming_distances(bits_a, bits_b))


def _signature_version() -> str:
    """Digest of what a signature depends on: its code, sizes and imagehash's version."""
    text = f"{inspect.getsource(image_signature)}{HASH_SIZE}{_THUMB}{imagehash.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: Signatures stored beside a cache are reused only by code that computes them alike.
SIGNATURE_VERSION = _signature_version()


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
    """Hash bits (N x 32 uint8) and thumbnails (N x 256) of every sample, decoded in parallel.

    In `num_workers` loader processes, or with none in this process's decode threads
    (PIL's resize and OpenCV release the GIL).
    """
    show = progress and len(samples) >= 500
    bits = np.zeros((len(samples), HASH_SIZE * HASH_SIZE // 8), np.uint8)
    thumbs = np.zeros((len(samples), _THUMB**2), np.float32)
    if not samples:
        return bits, thumbs
    if num_workers > 0:
        batches = DataLoader(_Signatures(samples, loader), batch_size=64, num_workers=num_workers)
        parts = list(tqdm(batches, desc="leakage check", unit="batch", disable=not show))
        return (
            torch.cat([b for b, _ in parts]).numpy(),
            torch.cat([t for _, t in parts]).numpy(),
        )

    def hash_chunk(start: int) -> int:
        for i in range(start, min(start + _HASH_CHUNK, len(samples))):
            bits[i], thumbs[i] = image_signature(loader(samples[i]))
        return min(_HASH_CHUNK, len(samples) - start)

    bar = tqdm(total=len(samples), desc="leakage check", unit="img", disable=not show)
    with ThreadPoolExecutor(decode_threads()) as pool:
        for done in pool.map(hash_chunk, range(0, len(samples), _HASH_CHUNK)):
            bar.update(done)
    bar.close()
    return bits, thumbs


def find_near_duplicates(
    samples: Sequence[Sample],
    bits: np.ndarray,
    thumbs: np.ndarray,
    max_distance: int = MAX_HASH_DISTANCE,
    min_correlation: float = MIN_CORRELATION,
    method: str = "index",
) -> list[NearDuplicate]:
    """Pairs of samples from different splits whose signatures match, closest first.

    `method="exhaustive"` compares every pair of hashes instead of using the band index;
    both give the same pairs in the same order (tests/test_leakage_index.py).
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {list(SEARCH_METHODS)}, got {method!r}")
    search = SEARCH_METHODS[method]
    split_of = np.array([s.split or "" for s in samples])
    # a blank image's thumbnail is zero: it correlates with nothing and is nobody's copy
    candidate = ~blank_thumbnails(thumbs) if min_correlation > 0 else np.ones(len(samples), bool)
    firsts, seconds, distances = [], [], []
    for split_a, split_b in combinations(SPLITS, 2):
        a_idx = np.flatnonzero((split_of == split_a) & candidate)
        b_idx = np.flatnonzero((split_of == split_b) & candidate)
        rows_a, rows_b, distance = search(bits[a_idx], bits[b_idx], max_distance)
        firsts.append(a_idx[rows_a])
        seconds.append(b_idx[rows_b])
        distances.append(distance)
    first, second, distance = (np.concatenate(x) for x in (firsts, seconds, distances))
    correlation = correlations_of(thumbs, first, second)
    return near_duplicates(samples, first, second, distance, correlation, min_correlation)


def correlations_of(thumbs: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Thumbnail correlation of each pair (rows `first[k]`, `second[k]`), one way for all."""
    return np.einsum("ij,ij->i", thumbs[first], thumbs[second])


def near_duplicates(
    samples: Sequence[Sample],
    first: np.ndarray,
    second: np.ndarray,
    distances: np.ndarray,
    correlations: np.ndarray,
    min_correlation: float,
) -> list[NearDuplicate]:
    """The pairs that also pass the correlation test, closest first (ties in input order)."""
    found = [
        NearDuplicate(samples[i], samples[j], int(distance), float(correlation))
        for i, j, distance, correlation in zip(first, second, distances, correlations, strict=True)
        if correlation >= min_correlation
    ]
    return sorted(found, key=lambda d: (d.hash_distance, -d.correlation))


def blank_thumbnails(thumbs: np.ndarray) -> np.ndarray:
    """Rows whose thumbnail is all zero (a blank image), scanned in bounded steps."""
    blank = np.zeros(len(thumbs), dtype=bool)
    for start in range(0, len(thumbs), _SCAN_ROWS):
        blank[start : start + _SCAN_ROWS] = ~np.any(thumbs[start : start + _SCAN_ROWS], axis=1)
    return blank


def later_copies(duplicates: Sequence[NearDuplicate]) -> list[Sample]:
    """The copy in the later split (train, then val, then test) of every pair, once each:
    what `data.leakage=drop` removes, so that val and test hold no image training saw."""
    order = {split: i for i, split in enumerate(SPLITS)}
    dropped: dict[tuple, Sample] = {}
    for d in duplicates:
        later = d.second if order[d.second.split] > order[d.first.split] else d.first
        dropped.setdefault((later.path, later.slice_index), later)
    return list(dropped.values())


def resolve_leakage_mode(mode: str | bool | None) -> str:
    """`warn`, `error` or `off` (YAML reads a bare `off` as False, which means off too)."""
    if mode is False or mode is None:
        return "off"
    if isinstance(mode, str) and mode.lower() in LEAKAGE_MODES:
        return mode.lower()
    raise DatasetError(f"data.leakage must be one of {list(LEAKAGE_MODES)}, got {mode!r}")


def leakage_summary(
    duplicates: Sequence[NearDuplicate], mode: str, dropped: Mapping[str, int]
) -> str | None:
    """One line on the near duplicates found across splits and what `data.leakage=<mode>`
    did with them (`dropped`: images left out per split); None when there are none."""
    if not duplicates:
        return None
    found = f"{len(duplicates)} near-duplicate pair(s) across splits (leakage.csv)"
    if not dropped:
        return f"{found}; data.leakage={mode}: kept, the metrics may be inflated"
    counts = ", ".join(f"{n} from {split}" for split, n in sorted(dropped.items()))
    return f"{found}; data.leakage=drop: {sum(dropped.values())} later copies dropped ({counts})"


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
