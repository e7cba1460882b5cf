"""Uploaded files, checked before anything decodes them: type from content, size, pixels.

The type comes from the content, through the registry every command reads files with
(`stroke.data.readers`: PNG and JPEG signatures, DICOM's `DICM` marker after its 128-byte
preamble, and any format registered with a header probe), never from the name the client
sent; that name is only shown back, never used as a path. Pixel counts are read from the
header by the format's probe (Pillow's, or the DICOM Rows x Columns x frames), so a small
file that would decode to gigabytes (a decompression bomb) is refused before decoding.
Files that pass are written to a private folder under generated names whose suffix is the
detected format's, where `stroke-predict`'s reader takes them like any file on disk.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from stroke.data.readers import (
    FileFormat,
    HeaderError,
    describe_formats,
    upload_format_of,
    upload_formats,
)

#: longest file name shown back, characters
_NAME_LIMIT = 200


class UploadRejected(ValueError):
    """A file that is not decoded: wrong type, too large, or too many pixels."""


@dataclass
class Upload:
    """One uploaded file as the server keeps it: its bytes, what they are, what to show."""

    index: int
    name: str
    data: bytes
    sha256: str
    kind: str = ""
    suffix: str = ""
    #: PatientID, StudyInstanceUID, SeriesInstanceUID, InstanceNumber, slice position (DICOM)
    dicom: dict[str, object] = field(default_factory=dict)

    @property
    def short_hash(self) -> str:
        """The first 16 hex digits of the SHA-256: what logs name a file by."""
        return self.sha256[:16]


def display_name(name: str | None, index: int) -> str:
    """The client's file name, for display only: no folders, no control characters, bounded."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    return text[:_NAME_LIMIT] or f"file {index + 1}"


def make_upload(index: int, name: str | None, data: bytes) -> Upload:
    """An Upload with its display name and content hash (not yet checked)."""
    return Upload(index, display_name(name, index), data, hashlib.sha256(data).hexdigest())


def sniff(data: bytes) -> tuple[str, str]:
    """(kind, suffix) from the content: a registered upload format's name (`png`, `jpeg`,
    `dicom`, ...) and its first suffix; UploadRejected otherwise."""
    file_format = _upload_format(data)
    return file_format.name, file_format.suffixes[0]


def _upload_format(data: bytes) -> FileFormat:
    """The registered upload format of the content; UploadRejected listing them otherwise."""
    file_format = upload_format_of(data)
    if file_format is not None:
        return file_format
    formats = upload_formats()
    notes = "; ".join(f.note for f in formats if f.note)
    raise UploadRejected(
        f"the content is not {describe_formats(formats)}"
        + (f" ({notes})" if notes else "")
        + "; the file name's extension is not looked at"
    )


def check_upload(upload: Upload, max_bytes: int, max_pixels: int) -> Upload:
    """Fill in kind and suffix after the checks; UploadRejected names the one that failed."""
    if len(upload.data) > max_bytes:
        raise UploadRejected(
            f"the file is larger than serve.max_file_mb ({max_bytes / 2**20:g} MB)"
        )
    if not upload.data:
        raise UploadRejected("the file is empty (0 bytes)")
    file_format = _upload_format(upload.data)
    upload.kind, upload.suffix = file_format.name, file_format.suffixes[0]
    try:
        header = file_format.header(upload.data)
    except HeaderError as err:
        raise UploadRejected(str(err)) from None
    upload.dicom = dict(header.fields)
    if header.pixels > max_pixels:
        raise UploadRejected(
            f"the image has {header.pixels:,} pixels, more than serve.max_pixels "
            f"({max_pixels:,}): refused before decoding (it could be a decompression bomb)"
        )
    return upload


def private_folder_file(folder: Path, upload: Upload) -> Path:
    """Write the upload into the request's private folder under a generated name; its path."""
    path = folder / f"upload_{upload.index:04d}{upload.suffix}"
    with path.open("xb") as fh:  # never overwrite: the name is ours, not the client's
        fh.write(upload.data)
    return path
