"""The decoded-image cache: decode once, reuse across epochs and runs, rebuild on change."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time

import lightning as L
import numpy as np
import pytest
import torch
from conftest import TINY, compose_train, make_class_folders, write_image
from hydra.utils import instantiate

from stroke.data import StrokeDataModule
from stroke.data.cache import ImageCache, loader_settings
from stroke.data.images import ImageLoader
from stroke.data.sources import FolderSource
from stroke.errors import DatasetError


class CountingLoader:
    """An image loader that counts how often it decodes a file."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.decoded = 0

    def cache_settings(self) -> dict:
        return loader_settings(self.inner)

    def __call__(self, path):
        self.decoded += 1
        return self.inner(path)


def _images(root):
    return sorted(p for p in root.rglob("*.png") if "masks" not in p.parts)


def test_second_epoch_and_second_run_decode_no_image(phantom_dir, tmp_path):
    cfg = compose_train([*TINY, f"data.root={phantom_dir}", f"data.cache_dir={tmp_path}"], tmp_path)
    counts: list[tuple[str, int]] = []

    class RecordDecodes(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            counts.append(("start", counting.decoded))

        def on_train_epoch_end(self, trainer, pl_module):
            counts.append(("end", counting.decoded))

    dm = instantiate(cfg.data)
    counting = dm.loader = CountingLoader(dm.loader)
    dm.setup("fit")
    n_images = len(dm.samples)
    assert counting.decoded == n_images  # the build decodes each file once
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.class_names)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[RecordDecodes()],
    )
    trainer.fit(model, datamodule=dm)
    assert counts == [("start", n_images), ("end", n_images)] * 2
    assert dm.image_cache.misses == 0

    # another run (a sweep trial) with the same data and settings reuses the store
    again = instantiate(cfg.data)
    again.loader = CountingLoader(again.loader)
    again.setup("fit")
    assert again.loader.decoded == 0
    assert not again.image_cache.built
    assert again.image_cache.path == dm.image_cache.path


def test_cached_tensors_equal_tensors_decoded_from_files(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 6, "stroke": 6}, size=37)
    # a non-square RGB image exercises conversion and letterboxing as well
    rgb = np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    write_image(root / "stroke" / "wide_rgb.png", rgb)

    def datamodule(cache: bool) -> StrokeDataModule:
        dm = StrokeDataModule(
            FolderSource(root),
            image_size=24,
            in_chans=1,
            num_workers=0,
            cache=cache,
            cache_dir=tmp_path / "cache",
        )
        dm.setup("fit")
        return dm

    from_files, from_cache = datamodule(False), datamodule(True)
    assert from_cache.image_cache is not None and from_files.image_cache is None
    for split in ("train", "val", "test"):
        files, cached = from_files.datasets[split], from_cache.datasets[split]
        assert len(files) == len(cached) > 0
        for i in range(len(files)):
            (a, label_a), (b, label_b) = files[i], cached[i]
            assert label_a == label_b
            # the cache stores the loader's output itself: no second resize, so no tolerance
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_changed_file_rebuilds_the_cache(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 3, "stroke": 3}, size=16)
    items = _images(root)
    loader = CountingLoader(ImageLoader(16, 1))
    first = ImageCache(loader, items, tmp_path / "cache", progress=False)
    assert first.built and loader.decoded == len(items)

    unchanged = ImageCache(loader, items, tmp_path / "cache", progress=False)
    assert not unchanged.built and unchanged.path == first.path
    assert loader.decoded == len(items)

    changed = items[2]
    write_image(changed, np.full((16, 16), 200, dtype=np.uint8))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    rebuilt = ImageCache(loader, items, tmp_path / "cache", progress=False)
    assert rebuilt.built and rebuilt.path != first.path
    assert loader.decoded == 2 * len(items)
    np.testing.assert_array_equal(rebuilt(changed), ImageLoader(16, 1)(changed))
    assert not first.path.exists()  # the superseded store is removed, not left to pile up


def test_other_settings_get_their_own_cache(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    items = _images(root)
    small = ImageCache(ImageLoader(8, 1), items, tmp_path / "cache", progress=False)
    large = ImageCache(ImageLoader(12, 3), items, tmp_path / "cache", progress=False)
    assert small.path != large.path and small.path.exists()  # both kept: a sweep uses both
    assert small(items[0]).shape == (8, 8, 1)
    assert large(items[0]).shape == (12, 12, 3)


def test_an_edited_source_reader_gets_its_own_cache(tmp_path, monkeypatch):
    """A DICOM/NIfTI-style source hands the loader its `read`: editing it must not reuse pixels."""
    module = tmp_path / "my_reader.py"
    reader_code = textwrap.dedent(
        """
        import numpy as np

        class MySource:
            def read(self, sample, in_chans):
                return np.full((16, 16, in_chans), {value}, dtype=np.uint8)
        """
    )
    module.write_text(reader_code.format(value=10))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_reader

    root = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    items = _images(root)
    loader = ImageLoader(8, 1, reader=my_reader.MySource().read)
    before = ImageCache(loader, items, tmp_path / "cache", progress=False)
    module.write_text(reader_code.format(value=200))  # the user fixes their reader
    after = ImageCache(loader, items, tmp_path / "cache", progress=False)
    assert after.path != before.path and after.built


def test_workers_get_the_folder_not_the_pixels(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 4, "stroke": 4}, size=64)
    items = _images(root)
    cache = ImageCache(ImageLoader(64, 3), items, tmp_path / "cache", progress=False)
    expected = [cache(item) for item in items]  # maps the store in this process
    shipped = pickle.dumps(cache)
    assert len(shipped) < 4096 < cache.nbytes
    clone = pickle.loads(shipped)
    for item, image in zip(items, expected, strict=True):
        np.testing.assert_array_equal(clone(item), image)
    out = clone(items[0])
    out[:] = 0  # callers get a copy: augmentation may write into it
    np.testing.assert_array_equal(clone(items[0]), expected[0])


def test_an_item_outside_the_cache_is_decoded_and_counted(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    items = _images(root)
    cache = ImageCache(ImageLoader(16, 1), items[:-1], tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(cache(items[-1]), ImageLoader(16, 1)(items[-1]))
    assert cache.misses == 1


def test_images_of_different_sizes_are_refused(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    items = _images(root)
    sizes = {path: 4 + i for i, path in enumerate(items)}
    with pytest.raises(DatasetError, match="share one size"):
        ImageCache(lambda path: np.zeros((sizes[path], 4, 1), np.uint8), items, tmp_path)
    assert list(tmp_path.glob(".*.tmp-*")) == []  # the failed build leaves nothing behind


def test_unusable_cache_dir_names_the_key(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 2, "stroke": 2}, size=16)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="data.cache_dir=.*data.cache=false"):
        ImageCache(ImageLoader(16, 1), _images(root), blocker / "cache", progress=False)


_BUILDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from stroke.data.cache import ImageCache, loader_settings
    from stroke.data.images import ImageLoader

    items = json.loads(sys.argv[1]); cache_dir, ready, go = sys.argv[2:5]
    inner = ImageLoader(16, 1)

    class SlowLoader:
        def cache_settings(self):
            return loader_settings(inner)

        def __call__(self, path):
            time.sleep(0.05)  # long enough for the other process to arrive mid-build
            return inner(path)

    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    cache = ImageCache(SlowLoader(), [Path(p) for p in items], cache_dir, progress=False,
                       build_workers=1)
    pixels = [cache(Path(p)).tolist() for p in items]
    print(json.dumps({"built": cache.built, "path": str(cache.path), "pixels": pixels}))
    """
)


@pytest.mark.slow
def test_two_processes_building_one_cache_do_not_corrupt_it(tmp_path):
    root = make_class_folders(tmp_path / "data", {"normal": 6, "stroke": 6}, size=16)
    items = [str(p) for p in _images(root)]
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    procs, readies = [], []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        readies.append(ready)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BUILDER,
                    json.dumps(items),
                    str(cache_dir),
                    str(ready),
                    str(go),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 240
    while not all(r.exists() for r in readies):  # both imported: start them together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert sorted(r["built"] for r in results) == [False, True]  # one built, one waited
    assert results[0]["path"] == results[1]["path"]
    expected = [ImageLoader(16, 1)(p).tolist() for p in items]
    assert results[0]["pixels"] == results[1]["pixels"] == expected
    leftovers = [p.name for p in cache_dir.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
