"""Pairs of binary hashes within a Hamming distance, found without comparing every pair.

Multi-index hashing on the pigeonhole principle: the bits are cut into `max_distance + 1`
disjoint bands, so two hashes that differ in at most `max_distance` bits agree exactly
on at least one band. Hashes are bucketed by each band's value, only hashes that share a
bucket are compared, and their exact distance decides. The result is the set of pairs an
exhaustive comparison finds, in time proportional to the hashes plus the candidates that
share a bucket, instead of to the product of the two sets.

The bands interleave bit positions (band `b` holds bits `b, b + m, b + 2m, ...` of `m`
bands): a perceptual hash lists its DCT coefficients from low to high frequency, and
similar images (brain slices) agree on most low-frequency bits, so contiguous bands of
them would make a few crowded buckets. `bucket_stats` measures how crowded they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Candidates verified at once: bounds the memory of one step (about 100 bytes each).
_CANDIDATES_PER_STEP = 1 << 19
#: Rows unpacked at once when computing band keys.
_ROWS_PER_STEP = 1 << 16


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which packed hashes differ (uint8 arrays whose last axis holds one hash's
    bytes; the other axes broadcast)."""
    if a.shape[-1] % 8 == 0:
        a, b = _as_words(a), _as_words(b)
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)


def _as_words(bits: np.ndarray) -> np.ndarray:
    """Packed hashes as 64-bit words: an eighth of the XORs and bit counts of bytes."""
    return np.ascontiguousarray(bits).view(np.uint64)


def band_columns(n_bits: int, n_bands: int) -> list[np.ndarray]:
    """Bit positions of each band: `n_bands` disjoint, interleaved sets covering `n_bits`."""
    if not 1 <= n_bands <= n_bits:
        raise ValueError(f"cannot cut {n_bits} bits into {n_bands} non-empty bands")
    return [np.arange(band, n_bits, n_bands) for band in range(n_bands)]


def band_keys(bits: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Each hash's value in each band (N x bands uint64) from packed hashes (N x bytes uint8)."""
    if max(len(c) for c in columns) > 64:
        raise ValueError("a band holds more than 64 bits; use more bands")
    keys = np.zeros((len(bits), len(columns)), dtype=np.uint64)
    for start in range(0, len(bits), _ROWS_PER_STEP):
        unpacked = np.unpackbits(bits[start : start + _ROWS_PER_STEP], axis=1)
        for band, cols in enumerate(columns):
            weights = np.left_shift(np.uint64(1), np.arange(len(cols), dtype=np.uint64))
            keys[start : start + len(unpacked), band] = (
                unpacked[:, cols].astype(np.uint64) @ weights
            )
    return keys


def pairs_within(
    a: np.ndarray, b: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of `a`, rows of `b`, distances) of every pair within `max_distance` bits.

    `a` and `b` are packed hashes (N x bytes uint8). Pairs come in row-major order (by row
    of `a`, then of `b`), the order an exhaustive scan yields them in.
    """
    n_bits = a.shape[1] * 8
    if len(a) == 0 or len(b) == 0:
        return _no_pairs()
    if max_distance + 1 > n_bits // 2:
        # bands of one bit or so put every hash in one of two buckets: compare them all
        return exhaustive_pairs_within(a, b, max_distance)
    columns = band_columns(n_bits, max_distance + 1)
    keys_a, keys_b = band_keys(a, columns), band_keys(b, columns)
    # compared as 64-bit words when the hashes allow it: an eighth of the work of bytes
    words_a, words_b = (_as_words(a), _as_words(b)) if a.shape[1] % 8 == 0 else (a, b)
    found: list[np.ndarray] = []
    for band in range(len(columns)):
        for rows_a, rows_b in _bucket_mates(keys_a[:, band], keys_b[:, band]):
            distance = np.bitwise_count(words_a[rows_a] ^ words_b[rows_b]).sum(axis=1)
            close = distance <= max_distance
            found.append(rows_a[close] * len(b) + rows_b[close])
    # a pair agreeing on several bands is found once per band
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    rows_a, rows_b = codes // len(b), codes % len(b)
    return rows_a, rows_b, hamming_distances(a[rows_a], b[rows_b])


def _bucket_mates(
    keys_a: np.ndarray, keys_b: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (row of a, row of b) whose keys are equal, in steps of bounded size."""
    order_b = np.argsort(keys_b, kind="stable")
    sorted_b = keys_b[order_b]
    low = np.searchsorted(sorted_b, keys_a, side="left")
    counts = np.searchsorted(sorted_b, keys_a, side="right") - low
    ends = np.cumsum(counts)
    start = 0
    while start < len(keys_a):
        # the rows of a whose candidates fit in one step (at least one row)
        budget = (ends[start - 1] if start else 0) + _CANDIDATES_PER_STEP
        stop = max(start + 1, int(np.searchsorted(ends, budget, side="right")))
        rows = np.arange(start, stop, dtype=np.int64)
        repeat = counts[start:stop]
        total = int(repeat.sum())
        if total:
            offsets = np.arange(total) - np.repeat(np.cumsum(repeat) - repeat, repeat)
            yield np.repeat(rows, repeat), order_b[np.repeat(low[start:stop], repeat) + offsets]
        start = stop


def exhaustive_pairs_within(
    a: np.ndarray, b: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same pairs as `pairs_within`, by comparing every row of `a` with every row of `b`.

    Quadratic: the reference the index is tested against, and the way for tiny inputs.
    """
    if len(a) == 0 or len(b) == 0:
        return _no_pairs()
    found_a, found_b, found_d = [], [], []
    chunk = max(1, _CANDIDATES_PER_STEP // len(b))
    for start in range(0, len(a), chunk):
        rows = np.arange(start, min(start + chunk, len(a)))
        distance = hamming_distances(a[rows][:, None, :], b[None, :, :])
        r, c = np.nonzero(distance <= max_distance)
        found_a.append(rows[r])
        found_b.append(c)
        found_d.append(distance[r, c])
    return (
        np.concatenate(found_a).astype(np.int64),
        np.concatenate(found_b).astype(np.int64),
        np.concatenate(found_d).astype(np.int64),
    )


def _no_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty.copy(), empty.copy()


@dataclass(frozen=True)
class BucketStats:
    """How evenly the bands spread a set of hashes (the index's cost, measured)."""

    hashes: int
    bands: int
    #: largest bucket of any band, as a share of the hashes
    largest_share: float
    #: pairs of hashes sharing a bucket, summed over bands: the candidates a self-join checks
    candidate_pairs: int

    @property
    def candidates_per_hash(self) -> float:
        """Candidates checked per hash: the constant of the index's linear cost."""
        return self.candidate_pairs / max(1, self.hashes)

    def describe(self) -> str:
        """One line for logs and benchmark notes."""
        return (
            f"{self.hashes} hashes in {self.bands} bands: largest bucket "
            f"{100 * self.largest_share:.2f}% of them, {self.candidates_per_hash:.1f} "
            "candidates per hash"
        )


def bucket_stats(bits: np.ndarray, max_distance: int, interleaved: bool = True) -> BucketStats:
    """Bucket sizes of `bits` (packed hashes) in the bands of `max_distance`.

    `interleaved=False` measures contiguous bands instead (bits 0..k-1, k..2k-1, ...),
    the layout this module avoids.
    """
    n_bits, n_bands = bits.shape[1] * 8, max_distance + 1
    columns = band_columns(n_bits, n_bands)
    if not interleaved:
        columns = [np.sort(c) for c in np.array_split(np.arange(n_bits), n_bands)]
    keys = band_keys(bits, columns)
    largest, pairs = 0, 0
    for band in range(n_bands):
        _, counts = np.unique(keys[:, band], return_counts=True)
        largest = max(largest, int(counts.max()))
        pairs += int((counts.astype(np.int64) * (counts - 1) // 2).sum())
    return BucketStats(len(bits), n_bands, largest / max(1, len(bits)), pairs)
