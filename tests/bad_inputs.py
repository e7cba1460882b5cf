"""Bad files made cheaply: decompression bombs, truncated copies, mangled headers.

Shared by the decoding tests and the fuzzing harness (tests/fuzz): each writes one file
and returns its path.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A valid 1-bit PNG of width x height black pixels: a few kB on disk, 400 million pixels
    for the default size (over Pillow's DecompressionBombError limit of about 179 million)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )
    return path


def truncated(path: Path, keep: float = 0.5) -> Path:
    """Cut `path` to the first `keep` of its bytes, in place (an interrupted copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path
