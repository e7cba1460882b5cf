"""Writing files so that a crash, a kill or a full disk never leaves half a file.

Every file a run keeps (checkpoints, metrics.json, status.json, reports, CSVs, caches'
indexes) is written to a temporary file beside it, flushed to disk and renamed over the
target: a reader sees the old file or the new one, never a mix. A failed write (disk full,
read-only, no permission) deletes the temporary file, keeps the previous good file and
raises a StorageError naming the file.

Lightning's own "atomic" checkpoint save writes to the system's temp folder and moves the
file across file systems, which copies it into place: `AtomicCheckpointIO` (in every
trainer config, `trainer.plugins`) writes beside the target instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from stroke.errors import StorageError

_HINTS = {
    errno.ENOSPC: "free space on that disk, or write the run elsewhere (hydra.run.dir=...)",
    errno.EDQUOT: "free space in your quota, or write the run elsewhere (hydra.run.dir=...)",
}
_DEFAULT_HINT = "write the run elsewhere (hydra.run.dir=...) or fix the folder's permissions"


def storage_error(path: Path, err: OSError, kept: bool = True) -> StorageError:
    """A StorageError for a failed write of `path`, saying that the previous file is kept."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    kept_text = f"; the previous {path.name} is kept" if kept and path.exists() else ""
    error = StorageError(f"cannot write {path}: {reason}{kept_text}", _HINTS.get(err.errno))
    error.errno = err.errno
    error.hint = error.hint or _DEFAULT_HINT
    return error


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """A file object whose content replaces `path` when the block ends without an error."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        if isinstance(err, StorageError):
            raise
        raise storage_error(path, err) from err
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` by `data` atomically (see the module docstring)."""
    with atomic_writer(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace `path` by `text` (UTF-8) atomically."""
    with atomic_writer(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_with(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Replace `path` by what `write(fh)` writes into a binary file object, atomically.

    How another library's writer (matplotlib's `savefig`, Pillow's `save`, numpy's `save`)
    gets the same guarantees: a failed write, whose OSError from `write(2)` names no file,
    is a StorageError naming `path`.
    """
    with atomic_writer(path, "wb") as fh:
        write(fh)
    return Path(path)


def atomic_write_json(path: str | Path, value: Any, **dumps_kwargs: Any) -> Path:
    """Replace `path` by `value` as JSON atomically (`indent=2` unless told otherwise)."""
    dumps_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(value, **dumps_kwargs))


def check_writable(folder: str | Path, needed_bytes: int = 0) -> Path:
    """Fail now, not after hours of training, when `folder` cannot take `needed_bytes`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as err:
        raise storage_error(folder, err, kept=False) from err
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise StorageError(
            f"{folder} has {free / 2**20:.0f} MB free; the run's checkpoints need about "
            f"{needed_bytes / 2**20:.0f} MB",
            _HINTS[errno.ENOSPC],
        )
    return folder


def _checkpoint_io_base() -> type:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    return TorchCheckpointIO


class AtomicCheckpointIO(_checkpoint_io_base()):
    """Lightning checkpoint IO writing each checkpoint beside its target, then renaming it.

    A kill during the write, or a full disk, leaves the previous checkpoint of that name
    (e.g. last.ckpt) intact; remote paths (s3://...) keep Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        import torch

        with atomic_writer(path, "wb") as fh:
            torch.save(checkpoint, fh)
