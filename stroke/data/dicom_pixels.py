"""One DICOM file: recognising it, decoding compressed pixel data, rescaling to HU, windowing.

pydicom decodes uncompressed, deflated and RLE data itself; JPEG, JPEG-LS and JPEG 2000
need plugins (pylibjpeg with pylibjpeg-libjpeg and pylibjpeg-openjpeg). A file whose
decoder is missing fails with the transfer syntax and the package to install, before
training rather than in the middle of an epoch.

One known export fault is corrected on request (`read_hu(..., correct_offset=True)`, what
the RSNA source asks for): 12-bit unsigned CT images whose RescaleIntercept is above -100
store HU modulo 4096 rather than HU - intercept. `has_offset_fault` says so from the
header; `corrected_offset` undoes it (+1000, wrap at 4096, intercept -1000).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_rescale, get_decoder
from pydicom.pixels import pixel_array as decode_pixel_array
from pydicom.uid import UID, MediaStorageDirectoryStorage

from stroke.data.decoding import decoding
from stroke.data.windowing import Window, apply_windows
from stroke.errors import DatasetError


class _DecoderTracebacks(logging.Filter):
    """pydicom logs each failed decoder plugin's traceback before it raises one error that
    lists them all; that error becomes our one line naming the file, so the log lines go."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and f"{os.sep}decoders{os.sep}" in record.pathname)


# pydicom's decoders log to their module's logger (pydicom.pixels.decoders.base), whose
# records a filter on the "pydicom" logger would not see
for _name in ("pydicom", "pydicom.pixels.decoders.base"):
    logging.getLogger(_name).addFilter(_DecoderTracebacks())

#: What to `pip install` for each family of compressed transfer syntaxes.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE (pydicom's own decoder is built in)
}
_FALLBACK_PACKAGES = "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"
_PREAMBLE = 128
#: Files that are certainly not DICOM, skipped without a forced read.
_NOT_DICOM_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".txt",
    ".csv",
    ".json",
    ".xml",
    ".pdf",
    ".md",
    ".html",
    ".zip",
    ".gz",
    ".nii",
    ".py",
    ".yaml",
    ".log",
)


def has_dicom_preamble(path: Path) -> bool:
    """True when the file has the DICOM Part 10 marker 'DICM' after its 128-byte preamble."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_PREAMBLE + 4)
    except OSError:
        return False
    return len(head) == _PREAMBLE + 4 and head[_PREAMBLE:] == b"DICM"


def read_header(path: Path) -> Dataset | None:
    """The file's data set without loading pixel data, or None when it is not DICOM.

    Files without the Part 10 preamble (old exports) are read with `force=True` and
    accepted only when they hold the elements every image has, so a stray text or PNG
    file in the tree is not mistaken for DICOM. A Part 10 file that pydicom cannot
    parse raises DatasetError.
    """
    preamble = has_dicom_preamble(path)
    if not preamble and path.name.lower().endswith(_NOT_DICOM_SUFFIXES):
        return None
    try:
        with warnings.catch_warnings():
            # a forced read of a stray file warns about every odd byte; the count says enough
            if not preamble:
                warnings.simplefilter("ignore")
            # large values (pixel data, overlays) are left on disk until asked for
            ds = pydicom.dcmread(path, defer_size=1024, force=not preamble)
    except Exception as err:  # a forced read of a random file can fail in any way
        if preamble:
            raise DatasetError(f"DICOM file {path} cannot be read: {err}") from err
        return None
    if not preamble and not ("SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)):
        return None
    return ds


def read_header_tags(path: Path, tags: Sequence[str]) -> Dataset:
    """Only the named elements of a Part 10 file, its file meta, and where its pixel data
    lies (offset and length, for `truncation`): the pixel bytes are never read.

    For archives of hundreds of thousands of slices whose layout is known (every file is
    DICOM): no forced read, no sniffing. A file pydicom cannot parse raises DatasetError.
    """
    try:
        # values over defer_size stay on disk; only the pixel data is that large here
        return pydicom.dcmread(path, defer_size=1024, specific_tags=[*tags, "PixelData"])
    except Exception as err:  # truncated or foreign files fail in many ways; all mean corrupt
        raise DatasetError(f"DICOM file {path} cannot be read: {err}") from err


@contextmanager
def lenient_values() -> Iterator[None]:
    """Read values that break the standard's rules without a warning each.

    The RSNA data anonymised its UIDs as `ID_<hex>` (not digits and dots): pydicom would
    warn, and log, once per UID read, millions of lines that ask nothing of the user.
    """
    settings = pydicom.config.settings
    before = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode = before


def transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax of a data set (Implicit VR Little Endian when the meta is absent)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(uid) if uid else UID("1.2.840.10008.1.2")


def is_dicomdir(path: Path, ds: Dataset) -> bool:
    """A DICOMDIR (media directory) lists files; it holds no image."""
    meta = getattr(ds, "file_meta", None)
    sop_class = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return path.name.upper() == "DICOMDIR" or sop_class == MediaStorageDirectoryStorage


def is_structured_report(ds: Dataset) -> bool:
    """Structured reports (SR) hold findings as text and codes, not pixels."""
    sop_class = ds.get("SOPClassUID")
    name = UID(sop_class).name if sop_class else ""
    return ds.get("Modality") == "SR" or name.endswith("SR Storage")


def require_decoder(uid: UID, where: str) -> None:
    """Raise naming the transfer syntax and the package to install when it cannot be decoded."""
    if not _is_transfer_syntax(uid):
        raise DatasetError(
            f"{where}: its TransferSyntaxUID {uid} is not a DICOM transfer syntax (private or "
            "mistyped), so its pixel data cannot be decoded; convert the file to a standard one"
        )
    if not uid.is_compressed:
        return
    name = uid.name if uid.is_transfer_syntax else "unknown transfer syntax"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DatasetError(
            f"{where}: transfer syntax {uid} ({name}) has no pixel-data decoder in pydicom "
            f"{pydicom.__version__}; convert the files (e.g. `dcmdjpeg` or `gdcmconv --raw`)"
        ) from None
    if decoder.is_available:
        return
    package = _DECODER_PACKAGES.get(str(uid), _FALLBACK_PACKAGES)
    missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
    raise DatasetError(
        f"{where}: transfer syntax {uid} ({name}) is compressed and no decoder for it is "
        f"installed; install one with `pip install {package}` (pydicom plugins: {missing})"
    )


def _is_transfer_syntax(uid: UID) -> bool:
    try:
        return uid.is_transfer_syntax
    except ValueError:  # pydicom cannot tell for a private UID: none of its decoders knows it
        return False


def truncation(path: Path, ds: Dataset) -> str | None:
    """Why a file read by `read_header_tags` cannot hold its image, or None: no pixel data,
    no image size, or a file that ends before its pixel data does.

    One `stat`, no pixel read: a truncated copy is found while listing, not mid-epoch.
    """
    if "PixelData" not in ds:
        return "no pixel data"
    try:
        rows, columns, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return "its header has no Rows, Columns or BitsAllocated"
    element = ds.get_item("PixelData", keep_deferred=True)
    start, length = getattr(element, "value_tell", None), getattr(element, "length", None)
    if start is None or length is None or length == 0xFFFFFFFF:  # encapsulated: no size
        return None
    size = path.stat().st_size
    if start + length > size:
        return f"the file ends {start + length - size} bytes before its pixel data does"
    declared = rows * columns * int(ds.get("SamplesPerPixel", 1) or 1) * frame_count(ds)
    uid = transfer_syntax(ds)
    if _is_transfer_syntax(uid) and not uid.is_compressed and length < declared * bits // 8:
        return f"{length} bytes of pixel data for the {declared * bits // 8} it declares"
    return None


def frame_count(ds: Dataset) -> int:
    """Frames in the file's pixel data (1 for an ordinary CT slice)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def slice_position(ds: Dataset) -> float | None:
    """Position of the slice along its normal (mm), from ImagePositionPatient/Orientation."""
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    try:
        if position is not None and orientation is not None and len(orientation) == 6:
            normal = np.cross(
                np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
            )
            return float(np.dot(normal, np.asarray(position, float)))
        if position is not None and len(position) == 3:
            return float(position[2])
    except (TypeError, ValueError):
        return None
    return None


#: Stored values wrap at 12 bits in the offset fault (`has_offset_fault`).
_TWELVE_BITS = 4096
#: The intercept the corrected values are read with, and the offset added to the stored ones.
_OFFSET_INTERCEPT = -1000


def has_offset_fault(ds: Dataset) -> bool:
    """True for a 12-bit unsigned image with RescaleIntercept > -100: its stored values are
    HU modulo 4096, not HU - intercept (a known fault of part of the RSNA hemorrhage data)."""
    try:
        return (
            int(ds.get("BitsStored", 0)) == 12
            and int(ds.get("PixelRepresentation", 1)) == 0
            and float(ds.get("RescaleIntercept", -1024)) > -100
        )
    except (TypeError, ValueError):
        return False


def corrected_offset(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """HU of an image with the offset fault: stored + 1000, wrapped at 4096, intercept -1000
    (the slope is the file's, 1 in every RSNA file)."""
    shifted = pixels.astype(np.int32) + (-_OFFSET_INTERCEPT)
    shifted[shifted >= _TWELVE_BITS] -= _TWELVE_BITS
    slope = float(ds.get("RescaleSlope", 1) or 1)
    return (shifted * slope + _OFFSET_INTERCEPT).astype(np.float32)


def header_window(ds: Dataset) -> Window | None:
    """The file's own display window (first WindowCenter/WindowWidth), if it has one."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None

    def first(value: object) -> object:  # multi-valued when the file offers several windows
        return value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value

    try:
        window = Window(width=float(first(width)), level=float(first(center)))
    except (TypeError, ValueError, IndexError):
        return None
    return window if window.width > 0 else None


def read_hu(
    path: str | Path, frame: int | None = None, correct_offset: bool = False
) -> tuple[np.ndarray, Dataset]:
    """One frame of a DICOM file as float32 values after the modality LUT (HU for CT).

    Returns the values and the data set (for its window and photometric tags).
    `correct_offset`: a file with the 12-bit offset fault (`has_offset_fault`) is read
    through `corrected_offset` instead of its own intercept.
    """
    path = Path(path)
    # a header pydicom cannot parse, or tags of the wrong type, fail in any way: one line
    with decoding(path, "DICOM file"):
        return _read_hu(path, frame, correct_offset)


def _read_hu(path: Path, frame: int | None, correct_offset: bool) -> tuple[np.ndarray, Dataset]:
    try:
        ds = pydicom.dcmread(path, force=not has_dicom_preamble(path))
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise DatasetError(f"cannot read DICOM file {path}: {err}") from err
    if "PixelData" not in ds:
        raise DatasetError(
            f"DICOM file {path} has no pixel data (SOP class {ds.get('SOPClassUID')})"
        )
    uid = transfer_syntax(ds)
    require_decoder(uid, str(path))
    n_frames = frame_count(ds)
    if frame is None and n_frames > 1:
        raise DatasetError(f"DICOM file {path} has {n_frames} frames; say which (slice_index)")
    if frame is not None and not 0 <= frame < n_frames:
        raise DatasetError(
            f"DICOM file {path} has {n_frames} frame(s); frame {frame} does not exist"
        )
    try:
        pixels = decode_pixel_array(ds, index=frame if n_frames > 1 else None)
    except Exception as err:  # decoders raise many types; all mean the same to the user
        raise DatasetError(
            f"cannot decode the pixel data of {path} (transfer syntax {uid}, {uid.name}): "
            + " ".join(str(err).split())
        ) from err
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return pixels, ds  # colour (secondary captures): no HU, handled by the caller
    if correct_offset and has_offset_fault(ds):
        return corrected_offset(pixels, ds), ds
    values = apply_rescale(pixels, ds)
    return np.asarray(values, dtype=np.float32), ds


def read_dicom_image(
    path: str | Path,
    windows: Sequence[Window | str],
    in_chans: int,
    frame: int | None = None,
    correct_offset: bool = False,
) -> np.ndarray:
    """A DICOM image as uint8 HxWxC: HU through each window, one channel per window.

    Colour files (secondary captures, screenshots) have no HU; they are scaled to uint8
    and converted to `in_chans` as a PNG would be. `correct_offset` as for `read_hu`.
    """
    values, ds = read_hu(path, frame, correct_offset)
    if values.ndim == 3:  # colour, H x W x 3 (pydicom converts YBR to RGB)
        rgb = values.astype(np.float32)
        if values.dtype != np.uint8:
            rgb = rgb / max(float(rgb.max()), 1.0) * 255.0
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        if in_chans == 1:
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
        return np.ascontiguousarray(rgb)
    if values.ndim != 2:
        raise DatasetError(f"DICOM file {path}: expected a 2-D image, got shape {values.shape}")
    image = apply_windows(values, windows, in_chans, header_window(ds))
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        # MONOCHROME1 displays low values white. HU windows are physical (dense = bright)
        # and need no flip; min..max and the file's own window must be turned round to
        # look like every other image.
        relative = [not isinstance(w, Window) for w in windows]
        if len(relative) == 1:
            relative = relative * image.shape[2]
        for c, flip in enumerate(relative):
            if flip:
                image[:, :, c] = 255 - image[:, :, c]
    return image
