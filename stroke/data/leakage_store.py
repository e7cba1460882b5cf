"""The leakage check (`check_leakage`, what a datamodule calls) and its work kept beside the
image cache: signatures and near pairs, once.

Both depend only on the cached pixels, not on how a run splits them. The first run on a
dataset hashes every image and finds every pair of images within the hash distance (the
band index over all of them, not split by split); both go into the cache's folder
(`leakage-<version>/`, removed with it). Every later run, sweep trial, fold or DDP rank
loads them and keeps the pairs its split separates that pass the correlation test: time
linear in the images, however the split changes. The result is what
`find_near_duplicates` returns for the same samples (tests/test_leakage_index.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from stroke.data.cache import ImageCache
from stroke.data.hash_index import pairs_within
from stroke.data.leakage import (
    MAX_HASH_DISTANCE,
    MIN_CORRELATION,
    SIGNATURE_VERSION,
    NearDuplicate,
    blank_thumbnails,
    correlations_of,
    find_near_duplicates,
    near_duplicates,
    resolve_leakage_mode,
    signatures,
)
from stroke.data.samples import SPLITS, Sample
from stroke.errors import DatasetError

log = logging.getLogger(__name__)

_PAIRS_FILE = f"pairs-{MAX_HASH_DISTANCE}.npz"


def stored_near_duplicates(
    cache: ImageCache, samples: Sequence[Sample], num_workers: int = 0
) -> list[NearDuplicate]:
    """`find_near_duplicates` of cached samples, from the pairs stored beside the cache."""
    rows = cache.rows(samples)
    folder = _stored(cache, samples, rows, num_workers)
    if folder is None:
        bits, thumbs = signatures(samples, cache, num_workers)
        return find_near_duplicates(samples, bits, thumbs)
    pairs = np.load(folder / _PAIRS_FILE)
    sample_of_row = np.full(len(cache), -1, dtype=np.int64)
    sample_of_row[rows] = np.arange(len(samples))
    first, second = sample_of_row[pairs["first"]], sample_of_row[pairs["second"]]
    rank = {split: k for k, split in enumerate(SPLITS)}
    split_rank = np.array([rank.get(s.split, -1) for s in samples] + [-1])
    a, b = split_rank[first], split_rank[second]  # a sample not in this run: index -1, no split
    across = np.flatnonzero((a >= 0) & (b >= 0) & (a != b))
    # ordered as the split-by-split search finds them: by pair of splits (train-val,
    # train-test, val-test), then by the first split's sample, then the second's
    swap = a > b
    first, second = np.where(swap, second, first), np.where(swap, first, second)
    pair_of_splits = np.full((len(SPLITS), len(SPLITS)), -1)
    for k, (x, y) in enumerate(combinations(range(len(SPLITS)), 2)):
        pair_of_splits[x, y] = k
    which = pair_of_splits[np.minimum(a, b), np.maximum(a, b)]
    order = across[np.lexsort((second[across], first[across], which[across]))]
    return near_duplicates(
        samples,
        first[order],
        second[order],
        pairs["distance"][order],
        pairs["correlation"][order],
        MIN_CORRELATION,
    )


def stored_signatures(
    cache: ImageCache, samples: Sequence[Sample], num_workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`signatures` of cached samples, computed once and kept beside the image cache.

    Thumbnails are memory-mapped. Samples the cache does not hold are hashed as
    `signatures` does, and nothing is stored.
    """
    rows = cache.rows(samples)
    folder = _stored(cache, samples, rows, num_workers)
    if folder is None:
        return signatures(samples, cache, num_workers)
    bits = np.load(folder / "bits.npy")
    thumbs = np.load(folder / "thumbs.npy", mmap_mode="r")
    if np.array_equal(rows, np.arange(len(thumbs))):
        return bits, thumbs  # the usual case: every cached image, in cache order
    return bits[rows], np.asarray(thumbs[rows])


def _stored(
    cache: ImageCache, samples: Sequence[Sample], rows: np.ndarray, workers: int
) -> Path | None:
    """The folder holding the cache's signatures and pairs, made if missing; None when
    the samples are not exactly the cached images, or nothing could be written."""
    if len(rows) != len(cache) or (rows < 0).any() or len(np.unique(rows)) != len(rows):
        return None
    folder = cache.path / f"leakage-{SIGNATURE_VERSION}"
    if not _complete(folder):
        from filelock import FileLock

        try:
            with FileLock(str(cache.cache_dir / f".{cache.key}.leakage.lock")):
                if not _complete(folder):  # else another process stored them meanwhile
                    _store(folder, cache, samples, rows, workers)
        except OSError as err:
            log.warning("leakage check: nothing stored beside the cache (%s)", err)
            return None
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("bits.npy", "thumbs.npy", _PAIRS_FILE))


def _store(
    folder: Path, cache: ImageCache, samples: Sequence[Sample], rows: np.ndarray, workers: int
) -> None:
    """Hash the samples, find every pair within the hash distance; write both atomically."""
    bits, thumbs = signatures(samples, cache, workers)
    if not np.array_equal(rows, np.arange(len(rows))):  # put them in cache order
        order = np.argsort(rows)
        bits, thumbs = bits[order], thumbs[order]
    first, second, distance = _all_pairs(bits, thumbs)
    correlation = correlations_of(thumbs, first, second)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        np.save(tmp / "bits.npy", bits)
        np.save(tmp / "thumbs.npy", thumbs)
        np.savez(
            tmp / _PAIRS_FILE,
            first=first,
            second=second,
            distance=distance,
            correlation=correlation,
        )
        if folder.exists():  # an incomplete folder (a crash, an older layout): replaced
            shutil.rmtree(folder)
        os.replace(tmp, folder)  # readers see every file or none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _all_pairs(bits: np.ndarray, thumbs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every pair of rows (first < second) within MAX_HASH_DISTANCE bits, blanks left out."""
    candidate = np.flatnonzero(~blank_thumbnails(thumbs))
    rows_a, rows_b, distance = pairs_within(bits[candidate], bits[candidate], MAX_HASH_DISTANCE)
    once = rows_a < rows_b
    return candidate[rows_a[once]], candidate[rows_b[once]], distance[once]


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
    if isinstance(loader, ImageCache):
        duplicates = stored_near_duplicates(loader, samples, num_workers)
    else:
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
    if mode == "drop":
        log.warning("%s\n(data.leakage=drop: the later copy of each pair is dropped)", message)
    else:
        log.warning("%s\n(data.leakage=error makes this an error, drop drops them)", message)
    return duplicates
