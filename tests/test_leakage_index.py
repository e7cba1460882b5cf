"""The leakage check's band index finds exactly the pairs the exhaustive search finds."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from stroke.data import FolderSource, StrokeDataModule
from stroke.data.hash_index import (
    band_columns,
    bucket_stats,
    exhaustive_pairs_within,
    hamming_distances,
    pairs_within,
)
from stroke.data.images import ImageLoader
from stroke.data.leakage import (
    MAX_HASH_DISTANCE,
    SIGNATURE_VERSION,
    find_near_duplicates,
    signatures,
)
from stroke.data.leakage_store import stored_near_duplicates


def clustered_hashes(rng: np.random.Generator, n: int, n_bytes: int, centres: np.ndarray):
    """Hashes scattered around a few centres: crowded buckets, and pairs at every distance."""
    hashes = centres[rng.integers(0, len(centres), n)].copy()
    flips = rng.random((n, n_bytes * 8)) < rng.uniform(0.0, 0.25)
    return hashes ^ np.packbits(flips, axis=1)


def assert_same_pairs(a: np.ndarray, b: np.ndarray, max_distance: int) -> int:
    indexed = pairs_within(a, b, max_distance)
    exhaustive = exhaustive_pairs_within(a, b, max_distance)
    for got, expected in zip(indexed, exhaustive, strict=True):
        np.testing.assert_array_equal(got, expected)
    return len(indexed[0])


def test_index_and_exhaustive_search_agree_on_random_hashes():
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(150):
        n_bytes = int(rng.choice([2, 4, 8, 32]))
        centres = rng.integers(0, 256, (int(rng.integers(1, 6)), n_bytes), dtype=np.uint8)
        a = clustered_hashes(rng, int(rng.integers(0, 80)), n_bytes, centres)
        b = clustered_hashes(rng, int(rng.integers(0, 80)), n_bytes, centres)
        found += assert_same_pairs(a, b, int(rng.integers(0, n_bytes * 4)))
    assert found > 1000  # the cases hold pairs to find, not only empty answers


def test_pairs_come_with_their_exact_distance():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    b = a.copy()
    b[:, 0] ^= 0b111  # three bits apart, row for row
    rows_a, rows_b, distances = pairs_within(a, b, MAX_HASH_DISTANCE)
    assert set(zip(rows_a.tolist(), rows_b.tolist(), strict=True)) >= {(i, i) for i in range(50)}
    np.testing.assert_array_equal(distances, hamming_distances(a[rows_a], b[rows_b]))
    assert (distances[rows_a == rows_b] == 3).all()


def test_bands_are_disjoint_and_cover_every_bit():
    columns = band_columns(256, MAX_HASH_DISTANCE + 1)
    every = np.concatenate(columns)
    assert len(columns) == 13 and sorted(every.tolist()) == list(range(256))
    with pytest.raises(ValueError, match="bands"):
        band_columns(8, 9)


def spread_over_splits(phantom_dir):
    """Every phantom slice in the split its slice number says: all slices get compared."""
    samples = FolderSource(phantom_dir, patient_regex=r"^(P\d+)_").load()
    return [replace(s, split=("train", "val", "test")[int(s.path.stem[-1]) % 3]) for s in samples]


def test_same_pairs_on_the_phantom_at_any_distance(phantom_dir):
    samples = spread_over_splits(phantom_dir)
    bits, thumbs = signatures(samples, ImageLoader(48, 1), progress=False)
    for distance in (MAX_HASH_DISTANCE, 40, 80):
        assert_same_pairs(bits, bits, distance)
        kwargs = {"max_distance": distance, "min_correlation": 0.5}
        indexed = find_near_duplicates(samples, bits, thumbs, method="index", **kwargs)
        exhaustive = find_near_duplicates(samples, bits, thumbs, method="exhaustive", **kwargs)
        assert indexed == exhaustive
    assert len(exhaustive) > 0  # the loosest setting pairs slices: there was something to find
    with pytest.raises(ValueError, match="method must be one of"):
        find_near_duplicates(samples, bits, thumbs, method="faster")


def re_encoded(path, rng: np.random.Generator) -> np.ndarray:
    """The image enlarged by 1..2x and saved as JPEG at quality 40..95 (as a copy would be).

    Not shrunk, as experiments/leakage_thresholds.py also does: the tiny phantom's slices
    are 48 px, and half of that keeps too little of them to be recognised.
    """
    image = Image.open(path)
    factor = rng.uniform(1.0, 2.0)
    image = image.resize((max(8, int(image.width * factor)), max(8, int(image.height * factor))))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(40, 96)))
    return np.asarray(Image.open(buffer))


def test_same_pairs_on_re_encoded_copies(phantom_dir, tmp_path):
    rng = np.random.default_rng(2)
    originals = [replace(s, split="train") for s in spread_over_splits(phantom_dir)]
    copies = []
    for i, sample in enumerate(originals):
        path = tmp_path / f"copy_{i:03d}.png"
        Image.fromarray(re_encoded(sample.path, rng)).save(path)
        copies.append(replace(sample, path=path, split=("val", "test")[i % 2]))
    samples = originals + copies
    bits, thumbs = signatures(samples, ImageLoader(64, 1), progress=False)
    indexed = find_near_duplicates(samples, bits, thumbs, method="index")
    exhaustive = find_near_duplicates(samples, bits, thumbs, method="exhaustive")
    assert indexed == exhaustive
    # and the check does its job: every copy is paired with its original
    pairs = {(d.first.path, d.second.path) for d in indexed}
    assert pairs >= {(o.path, c.path) for o, c in zip(originals, copies, strict=True)}


def copies_beside(phantom_dir, root, count: int = 8) -> None:
    """The phantom with `count` slices again as JPEGs at 1.5x, each as another patient."""
    shutil.copytree(phantom_dir, root)
    slices = sorted(root.glob("*/P*_s*.png"))[:count]
    for i, path in enumerate(slices):
        image = Image.open(path)
        image = image.resize((image.width * 3 // 2, image.height * 3 // 2), Image.BILINEAR)
        image.save(path.parent / f"P{900 + i}_s00.jpg", format="JPEG", quality=75)


def test_stored_pairs_give_the_search_result_for_any_split(phantom_dir, tmp_path, monkeypatch):
    copies_beside(phantom_dir, tmp_path / "data")

    def datamodule(seed: int) -> StrokeDataModule:
        dm = StrokeDataModule(
            FolderSource(tmp_path / "data", patient_regex=r"^(P\d+)_"),
            image_size=48,
            num_workers=0,
            seed=seed,
            val_fraction=0.3,
            test_fraction=0.3,
            cache_dir=tmp_path / "cache",
        )
        dm.setup("fit")
        return dm

    first = datamodule(0)
    stored = first.image_cache.path / f"leakage-{SIGNATURE_VERSION}"
    assert {p.name for p in stored.iterdir()} == {"bits.npy", "thumbs.npy", "pairs-12.npz"}
    # the stored signatures are those of the cached pixels, row for row
    bits, thumbs = signatures(first.samples, first.image_cache, progress=False)
    np.testing.assert_array_equal(np.load(stored / "bits.npy"), bits)
    np.testing.assert_array_equal(np.load(stored / "thumbs.npy"), thumbs)
    assert first.near_duplicates == find_near_duplicates(first.samples, bits, thumbs)

    import stroke.data.leakage as leakage

    def no_hashing(*args, **kwargs):
        raise AssertionError("a cached run hashed an image again")

    monkeypatch.setattr(leakage, "image_signature", no_hashing)
    rng = np.random.default_rng(0)
    found = 0
    for seed in range(6):  # other splits of the same images: the same store answers them
        dm = datamodule(seed)
        assert not dm.image_cache.built
        assert dm.near_duplicates == find_near_duplicates(dm.samples, bits, thumbs)
        found += len(dm.near_duplicates)
        shuffled = [replace(s, split=str(rng.choice(["train", "val", "test"]))) for s in dm.samples]
        expected = find_near_duplicates(shuffled, bits, thumbs)
        assert stored_near_duplicates(dm.image_cache, shuffled) == expected
        found += len(expected)
    assert found >= 8  # the copies were found across splits: the comparisons were not empty


def test_bucket_statistics_describe_the_index_cost(phantom_dir):
    samples = spread_over_splits(phantom_dir)
    bits, _ = signatures(samples, ImageLoader(48, 1), progress=False)
    stats = bucket_stats(bits, MAX_HASH_DISTANCE)
    assert stats.hashes == len(samples) and stats.bands == 13
    assert 0 < stats.largest_share <= 1 and stats.candidate_pairs >= 0
    assert "candidates per hash" in stats.describe()
