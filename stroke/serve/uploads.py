"""Uploaded files, checked before anything decodes them: type from content, size, pixels.

The type comes from the first bytes (PNG and JPEG signatures, DICOM's `DICM` marker after
its 128-byte preamble), never from the name the client sent; that name is only shown
back, never used as a path. Pixel counts are read from the header (Pillow's, or the DICOM
Rows x Columns x frames), so a small file that would decode to gigabytes (a decompression
bomb) is refused before decoding. Files that pass are written to a private folder under
generated names whose suffix is the detected type, where `stroke-predict`'s reader takes
them like any file on disk.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from PIL import Image, UnidentifiedImageError

#: (signature at offset 0, kind, suffix the saved file gets)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png", ".png"),
    (b"\xff\xd8\xff", "jpeg", ".jpg"),
)
_DICOM_MARKER_AT = 128
#: longest file name shown back, characters
_NAME_LIMIT = 200
#: DICOM header fields a series summary needs; never logged
_SERIES_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")


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
    """(kind, suffix) from the content: `png`, `jpeg` or `dicom`; UploadRejected otherwise."""
    for signature, kind, suffix in _SIGNATURES:
        if data.startswith(signature):
            return kind, suffix
    if data[_DICOM_MARKER_AT : _DICOM_MARKER_AT + 4] == b"DICM":
        return "dicom", ".dcm"
    raise UploadRejected(
        "the content is not PNG, JPEG or DICOM (a DICOM file needs the 'DICM' marker after "
        "its 128-byte preamble); the file name's extension is not looked at"
    )


def check_upload(upload: Upload, max_bytes: int, max_pixels: int) -> Upload:
    """Fill in kind and suffix after the checks; UploadRejected names the one that failed."""
    if len(upload.data) > max_bytes:
        raise UploadRejected(
            f"the file is larger than serve.max_file_mb ({max_bytes / 2**20:g} MB)"
        )
    if not upload.data:
        raise UploadRejected("the file is empty (0 bytes)")
    upload.kind, upload.suffix = sniff(upload.data)
    if upload.kind == "dicom":
        pixels, upload.dicom = _dicom_header(upload.data)
    else:
        pixels = _image_pixels(upload.data, max_pixels)
    if pixels > max_pixels:
        raise UploadRejected(
            f"the image has {pixels:,} pixels, more than serve.max_pixels ({max_pixels:,}): "
            "refused before decoding (it could be a decompression bomb)"
        )
    return upload


def _image_pixels(data: bytes, max_pixels: int) -> int:
    """Width x height from the PNG or JPEG header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadRejected(
            f"the image is larger than Pillow's decompression-bomb limit, refused ({err})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        # Pillow's message names the in-memory buffer object: the type says enough
        raise UploadRejected(f"the image header cannot be read ({type(err).__name__})") from None
    return int(width) * int(height)


def _dicom_header(data: bytes) -> tuple[int, dict[str, object]]:
    """(pixels in all frames, the series fields) from the header; pixel data is not read."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as err:  # pydicom raises many types for a damaged header
        raise UploadRejected(f"the DICOM header cannot be read: {type(err).__name__}") from None
    try:
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = max(1, int(ds.get("NumberOfFrames") or 1))
        samples = max(1, int(ds.get("SamplesPerPixel") or 1))
    except (TypeError, ValueError):
        raise UploadRejected(
            "the DICOM header's Rows, Columns or NumberOfFrames is not a number"
        ) from None
    if not rows or not columns:
        raise UploadRejected("the DICOM file holds no image (no Rows and Columns)")
    fields: dict[str, object] = {tag: str(ds.get(tag) or "") for tag in _SERIES_TAGS}
    fields["InstanceNumber"] = _number(ds.get("InstanceNumber"))
    return rows * columns * frames * samples, fields


def _number(value: object) -> int | None:
    try:
        return int(value) if value is not None and str(value) != "" else None
    except (TypeError, ValueError):
        return None


def private_folder_file(folder: Path, upload: Upload) -> Path:
    """Write the upload into the request's private folder under a generated name; its path."""
    path = folder / f"upload_{upload.index:04d}{upload.suffix}"
    with path.open("xb") as fh:  # never overwrite: the name is ours, not the client's
        fh.write(upload.data)
    return path
