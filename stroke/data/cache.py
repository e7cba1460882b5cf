"""Decoded-image cache: every image is decoded and resized once into a memory-mapped array.

Small medical datasets are read hundreds of times (epochs x runs x sweep trials); decoding
and resizing the same file each time wastes most of the machine. `ImageCache` wraps any
loader (a callable item -> uint8 H x W x C array, e.g. `ImageLoader`), runs it once per
item into `<cache_dir>/<key>/images.npy` and afterwards answers from that file.

The key hashes the item list, each file's size and modification time, the loader's
settings and its code, so a changed file, another `image_size` or an edited reader gets a
fresh cache and never a stale one. Segmentation stores each image with its lesion mask as
one more channel (`stroke.tasks.segmentation.masks.MaskedLoader`, which lists the mask among an
item's files): another loader, so another key, beside the classification cache of the
same images. Two processes (sweep trials, DDP ranks) building the
same cache take turns on a file lock; the build goes to a temporary folder renamed into
place when complete, so a reader never sees half a cache. The store is memory-mapped:
pages are shared by DataLoader workers and parallel runs through the OS page cache, and
resident memory holds only the pages in use, whatever the dataset size.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stroke.errors import DatasetError
from stroke.hardware import decode_threads

log = logging.getLogger(__name__)

#: Bump when the on-disk layout changes, so caches written by older code are not reused.
CACHE_FORMAT = 1
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"
# Sample fields that do not change the pixels: a new split or label must not rebuild the cache.
_NOT_PIXEL_FIELDS = frozenset({"label", "patient_id", "split"})
# Items decoded per batch of the build: bounds memory while threads decode in parallel.
_BUILD_CHUNK = 256


def item_key(item: Any) -> str:
    """The identity of a loader input in the cache: its path, plus any pixel-relevant field.

    A path (or str) is its own key. A dataclass sample (e.g. a slice of a volume, which
    shares its path with other slices) is keyed by all its fields except label, patient
    and split, which do not change the pixels.
    """
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        fields = {
            f.name: getattr(item, f.name)
            for f in dataclasses.fields(item)
            if f.name not in _NOT_PIXEL_FIELDS
        }
        return json.dumps(fields, default=str, sort_keys=True)
    return repr(item)


def item_path(item: Any) -> Path:
    """The file an item is read from: the item itself or its `path` attribute."""
    path = item if isinstance(item, str | os.PathLike) else item.path
    return path if isinstance(path, Path) else Path(path)


def loader_settings(loader: Callable) -> dict[str, Any]:
    """What a loader's output depends on besides the file: class, plain attributes, code.

    A loader may define `cache_settings() -> dict` to say it explicitly; otherwise its
    public int/float/str/bool/None/tuple/list attributes are taken (`image_size`,
    `in_chans`, a window in HU...), plus a digest of the source of its module and of its
    `reader`'s module (a DICOM or NIfTI source), so an edited reader does not reuse pixels
    decoded by the old one.
    """
    if hasattr(loader, "cache_settings"):
        settings = dict(loader.cache_settings())
    else:
        settings = {}
        for name, value in sorted(getattr(loader, "__dict__", {}).items()):
            if not name.startswith("_") and isinstance(
                value, int | float | str | bool | tuple | list | type(None)
            ):
                settings[name] = value
    kind = _code_of(loader)
    settings["loader"] = f"{kind.__module__}.{kind.__qualname__}"
    settings["code"] = _source_digest(kind)
    # a source that decodes its own format (DICOM, NIfTI) hands the loader its `read`:
    # that reader's code decides the pixels as much as the loader's
    reader = getattr(loader, "reader", None)
    if reader is not None:
        settings["reader_code"] = _source_digest(_code_of(getattr(reader, "__self__", reader)))
    return settings


def _code_of(obj: Any) -> Any:
    """Where a callable's code lives: the function itself, or an instance's class."""
    return obj if inspect.isfunction(obj) else type(obj)


def _source_digest(kind: Any) -> str:
    try:
        source = Path(inspect.getsourcefile(kind) or "").read_bytes()
    except (TypeError, OSError):
        return "unknown"
    return hashlib.sha256(source).hexdigest()[:12]


def cache_key(
    items: Sequence[Any],
    settings: Mapping[str, Any],
    files: Callable[[Any], Sequence[Path]] | None = None,
) -> tuple[str, str]:
    """(key, family): the key changes with any file, size, mtime or setting; the family
    (settings and dataset folder) stays, so a rebuilt cache replaces its predecessor.

    `files(item)` lists the files an item is decoded from when it is more than its own
    path (an image and its lesion mask); by default the item's path alone.
    """
    head = json.dumps({"format": CACHE_FORMAT, "settings": settings}, sort_keys=True, default=str)
    digest = hashlib.sha256(head.encode())
    for item in items:
        stats = []
        for path in [item_path(item)] if files is None else files(item):
            try:
                stat = Path(path).stat()
            except OSError as err:
                raise DatasetError(f"cannot read image file {path}: {err}") from err
            stats.append(f"{stat.st_size}\0{stat.st_mtime_ns}")
        separator = "\0"
        digest.update(f"{item_key(item)}\0{separator.join(stats)}\n".encode())
    # resolved once per folder, not per file: a dataset has far fewer folders than images
    folders = {item_path(item).parent for item in items}
    try:
        folder = os.path.commonpath([str(parent.resolve()) for parent in folders])
    except ValueError:  # different drives
        folder = ""
    family = hashlib.sha256(f"{head}\0{folder}".encode()).hexdigest()[:16]
    return digest.hexdigest()[:16], family


class ImageCache:
    """A loader's output for a fixed list of items, decoded once into a memory-mapped store.

    Call it like the loader it wraps: `cache(item)` returns that item's uint8 H x W x C
    array (a copy: augmentation may write into it). An item outside the list falls back to
    the wrapped loader and is counted in `misses`. Pickling (DataLoader workers under
    spawn) carries the folder name, not the array; each process maps the file on first use.
    """

    def __init__(
        self,
        loader: Callable[[Any], np.ndarray],
        items: Sequence[Any],
        cache_dir: str | Path,
        settings: Mapping[str, Any] | None = None,
        progress: bool = True,
        build_workers: int | None = None,
    ) -> None:
        if not items:
            raise DatasetError("the image cache needs at least one image to store")
        self.loader = loader
        self.cache_dir = Path(cache_dir).expanduser()
        self.settings = dict(settings) if settings is not None else loader_settings(loader)
        # a loader that reads more than the item's file (an image and its mask) lists them
        self.key, self.family = cache_key(items, self.settings, getattr(loader, "item_files", None))
        self.path = self.cache_dir / self.key
        #: whether this process decoded the images (False: an existing cache was reused)
        self.built = False
        #: calls answered by the wrapped loader because the item was not in the cache
        self.misses = 0
        self.build_seconds = 0.0
        self._images: np.ndarray | None = None
        self._rows: dict[str, int] | None = None
        self._items: list[Any] | None = list(items)
        self._ensure(self._items, progress, build_workers or decode_threads())

    # -- reading ---------------------------------------------------------------------------
    def __call__(self, item: Any) -> np.ndarray:
        """The cached array of `item` (decoded by the wrapped loader if it is not cached)."""
        if self._images is None:
            self._open()
        row = self._rows.get(item_key(item))
        if row is None:
            self.misses += 1
            return self.loader(item)
        return np.array(self._images[row])

    def __len__(self) -> int:
        if self._images is None:
            self._open()
        return len(self._images)

    def rows(self, items: Sequence[Any]) -> np.ndarray:
        """The items' rows in the store (-1 for one not cached): the key of data kept beside
        the cache, such as the leakage check's signatures."""
        built_from = self._items
        # the key fixes the stored order: the very items it was made of are rows 0..n-1
        if (
            built_from is not None
            and len(items) == len(built_from)
            and all(a is b for a, b in zip(items, built_from, strict=True))
        ):
            return np.arange(len(items))
        if self._images is None:
            self._open()
        return np.array([self._rows.get(item_key(item), -1) for item in items], dtype=np.int64)

    @property
    def nbytes(self) -> int:
        """Size of the stored images in bytes."""
        return (self.path / IMAGES_FILE).stat().st_size

    def __getstate__(self) -> dict[str, Any]:
        # Workers re-map the file themselves; never ship the array (or its row index).
        state = self.__dict__.copy()
        state["_images"] = None
        state["_rows"] = None
        state["_items"] = None
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"

    def _open(self) -> None:
        index = json.loads((self.path / INDEX_FILE).read_text())
        self._rows = {key: row for row, key in enumerate(index["keys"])}
        self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")

    # -- building --------------------------------------------------------------------------
    def _ensure(self, items: list[Any], progress: bool, threads: int) -> None:
        """Reuse the cache under `self.path` or build it, one process at a time."""
        from filelock import FileLock

        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DatasetError(
                f"data.cache_dir={str(self.cache_dir)!r} cannot be created ({err}); "
                "set data.cache_dir to a writable folder or data.cache=false"
            ) from err
        if not self._complete():
            with FileLock(str(self.cache_dir / f".{self.key}.lock")):
                if not self._complete():  # else another process built it while we waited
                    started = time.perf_counter()
                    self._build(items, progress, threads)
                    self.build_seconds = time.perf_counter() - started
                    self.built = True
        # Mapped now, so forked DataLoader workers inherit the mapping (mapping reads nothing).
        self._open()
        if self.built:
            self._prune_superseded()
            log.info(
                "image cache: %d images (%.1f MB) decoded in %.1f s into %s",
                len(items),
                self.nbytes / 1e6,
                self.build_seconds,
                self.path,
            )

    def _complete(self) -> bool:
        return (self.path / INDEX_FILE).is_file() and (self.path / IMAGES_FILE).is_file()

    def _build(self, items: list[Any], progress: bool, threads: int) -> None:
        from tqdm import tqdm

        for leftover in self.cache_dir.glob(f".{self.key}.tmp-*"):  # a crashed build
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = self.cache_dir / f".{self.key}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            first = self._decode(items[0], None)
            shape = (len(items), *first.shape)
            try:
                images = np.lib.format.open_memmap(
                    tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=shape
                )
                _reserve_disk(tmp / IMAGES_FILE)
            except OSError as err:
                raise DatasetError(
                    f"cannot write a {np.prod(shape) / 1e9:.1f} GB image cache under "
                    f"data.cache_dir={str(self.cache_dir)!r} ({err}); free space there, point "
                    "data.cache_dir (or STROKE_CACHE_DIR) elsewhere, or set data.cache=false"
                ) from err
            images[0] = first
            # closed on a failure too, so the error line starts a line of its own
            with (
                tqdm(
                    total=len(items), desc="caching images", unit="img", disable=not progress
                ) as bar,
                ThreadPoolExecutor(threads) as pool,
            ):
                bar.update(1)
                for start, chunk in _chunks(items, 1, _BUILD_CHUNK):
                    decoded = pool.map(lambda item: self._decode(item, first.shape), chunk)
                    for offset, image in enumerate(decoded):
                        images[start + offset] = image
                    bar.update(len(chunk))
            images.flush()
            del images
            index = {
                "format": CACHE_FORMAT,
                "family": self.family,
                "settings": self.settings,
                "shape": [len(items), *first.shape],
                "keys": [item_key(item) for item in items],
            }
            (tmp / INDEX_FILE).write_text(json.dumps(index, default=str))
            if self.path.exists():  # an incomplete folder left by hand or an old crash
                shutil.rmtree(self.path)
            os.replace(tmp, self.path)  # atomic: readers see all of the cache or none of it
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _decode(self, item: Any, shape: tuple[int, ...] | None) -> np.ndarray:
        image = self.loader(item)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            raise DatasetError(
                f"the loader returned {type(image).__name__} "
                f"{getattr(image, 'dtype', '')}{getattr(image, 'shape', '')} for "
                f"{item_path(item)}; the image cache stores uint8 H x W x C arrays"
            )
        if shape is not None and image.shape != shape:
            raise DatasetError(
                f"the loader returned shape {image.shape} for {item_path(item)}, "
                f"but {shape} for the first image; cached images must share one size"
            )
        return image

    def _prune_superseded(self) -> None:
        """Delete caches of the same dataset and settings that this one replaces."""
        for other in self.cache_dir.iterdir():
            if other == self.path or other.name.startswith(".") or not other.is_dir():
                continue
            try:
                family = json.loads((other / INDEX_FILE).read_text()).get("family")
            except (OSError, ValueError):
                continue
            if family == self.family:
                # A run still reading it keeps its mapping: unlinking does not unmap.
                shutil.rmtree(other, ignore_errors=True)
                log.info("image cache: removed superseded %s", other)


def _reserve_disk(path: Path) -> None:
    """Allocate the (sparse) file's blocks now: a full disk is then an error here, not a
    SIGBUS when a page of the mapping is written later."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise
            # file systems without fallocate: the mapping allocates as it is written


def _chunks(items: list[Any], start: int, size: int) -> Iterator[tuple[int, list[Any]]]:
    for begin in range(start, len(items), size):
        yield begin, items[begin : begin + size]
