"""The guard every decode goes through: a decoder's failure becomes one line naming the file.

Decoders read a stranger's bytes and fail in any way they like: Pillow raises
`DecompressionBombError` (not an OSError) for a header claiming too many pixels, `OSError`
for a truncated stream, `struct.error` or `SyntaxError` for a mangled chunk; pydicom raises
`InvalidDicomError`, `KeyError`, `TypeError` or `NotImplementedError` for a header it cannot
parse or a transfer syntax it cannot decode; nibabel raises `ImageFileError`, `EOFError` or
`zlib.error` for a damaged volume. Inside `decoding(path)` each becomes a `DatasetError`
that names the file, what the file is and what the decoder said, chained to the original
(whose traceback the run's log keeps). `stroke.data.images.ImageLoader.decode` (every
loader of training, the cache builder, stroke-predict and stroke-serve), the formats'
header probes and the mask readers decode inside it.

Errors that are not the file's fault pass through unchanged: a `StrokeError` of ours
(already one line), `MemoryError` (the out-of-memory status), and anything that is not an
`Exception` (Ctrl-C, SystemExit).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from stroke.errors import DatasetError, StrokeError


@contextmanager
def decoding(path: str | Path, what: str = "image") -> Iterator[None]:
    """Run a decode of `path` (a file of kind `what`: image, DICOM file, NIfTI volume, mask);
    a decoder's exception leaves as a DatasetError naming the file."""
    try:
        yield
    except (StrokeError, MemoryError):
        raise
    except Exception as err:
        raise DatasetError(decode_failure(Path(path), what, err)) from err


def decode_failure(path: Path, what: str, err: BaseException) -> str:
    """The one line for a decoder's exception `err` raised while reading `path`."""
    if isinstance(err, Image.DecompressionBombError):
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "more pixels"
        return (
            f"{what} {path} claims {size}, over Pillow's decompression-bomb limit of "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}: refused before decoding"
        )
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read {what} {path}: {os.strerror(err.errno)} (check its permissions)"
    if isinstance(err, FileNotFoundError):
        return f"cannot read {what} {path}: it does not exist (removed after it was listed?)"
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return f"cannot read {what} {path}: a symbolic link loop"
    if isinstance(err, IsADirectoryError):
        return f"cannot read {what} {path}: it is a folder"
    text = " ".join(str(err).split()) or "no message"
    if len(text) > 300:  # a decoder that dumps its buffer: the start says what it is
        text = text[:300] + " ..."
    return f"cannot decode {what} {path}: {type(err).__name__}: {text}"
