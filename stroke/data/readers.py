"""The file formats stroke reads, found by content: one registry for train, predict and serve.

A format is a `FileFormat`: a name, how its content is recognised (bytes at an offset, or a
`recognise` function where no fixed signature can say, as for gzip-compressed NIfTI), the
suffixes its files carry, how it decodes to uint8 H x W x C, and, for stroke-serve, a
header probe that counts pixels without decoding. Everything that reads a file asks here:
training's image sources list the suffixes of `image_suffixes()`, every loader decodes
through `FileReader`, stroke-predict searches folders for `searched_suffixes()`, and
stroke-serve's upload check recognises and probes uploads with `upload_format_of`.
`register_reader` adds a format to all of them at once.

The content decides, never the name, except where the content cannot: a DICOM file
written without its Part 10 preamble has no marker (its `.dcm` suffix says DICOM), and a
damaged file named `.png` is given to the PNG decoder, whose error names the file.
Folders are listed by suffix (opening every file of an archive to sniff it would be slow).
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from stroke.data.decoding import decoding
from stroke.data.dicom_pixels import read_dicom_image, read_header
from stroke.data.images import read_image
from stroke.data.nifti import NIFTI_SUFFIXES, axial_spacing_mm, read_axial_slice, volume_geometry
from stroke.data.samples import Sample
from stroke.data.windowing import Window, apply_windows, check_windows_fit, resolve_window
from stroke.errors import DatasetError

#: bytes read from the start of a file to recognise it (DICOM's marker ends at byte 132,
#: a NIfTI-1 header's at 348; gzip needs a few hundred more to yield those 348)
HEAD_BYTES = 4096
#: (height, width, (row, column) pixel spacing in mm or None, slice spacing in mm or None)
PixelGrid = tuple[int, int, tuple[float, float] | None, float | None]
#: (path, in_chans, HU windows or None, frame/slice index or None) -> uint8 H x W x in_chans
Decode = Callable[[Path, int, Sequence[Window | str] | None, int | None], np.ndarray]


class HeaderError(DatasetError):
    """A file's header cannot be read or describes no image (the upload check's refusal)."""


@dataclass(frozen=True)
class Header:
    """What a format's header says without decoding: pixels to allocate, fields to show."""

    #: pixels of all frames and samples: what decoding would allocate (a bomb is refused)
    pixels: int
    #: fields of the format shown back by stroke-serve (DICOM: the series it belongs to)
    fields: dict[str, object]


@dataclass(frozen=True)
class FileFormat:
    """One file format: how it is recognised, listed, decoded and probed.

    name: what results and logs call it (`png`, `dicom`); label: what messages call it.
    suffixes: its files' suffixes, lower case; the first is the name a stored upload gets.
    signatures: (offset, bytes) pairs, any one of which identifies the content.
    recognise: the content test where no fixed signature says it (the first HEAD_BYTES).
    decode: the file's image (its frame or axial slice `index`; None for a single image).
    header: the upload check's probe of the bytes; None: stroke-serve refuses the format.
    geometry: size and spacing from the header (None: the decoded image's size, no spacing).
    hu: the values are HU, read through the windows a model records (DICOM, NIfTI).
    volume: a file holds a volume of axial slices (segmenters predict it as a whole).
    note: what the upload refusal says about recognising it (DICOM's preamble).
    """

    name: str
    label: str
    suffixes: tuple[str, ...]
    decode: Decode
    signatures: tuple[tuple[int, bytes], ...] = ()
    recognise: Callable[[bytes], bool] | None = None
    header: Callable[[bytes], Header] | None = None
    geometry: Callable[[Path, int | None], PixelGrid] | None = None
    hu: bool = False
    volume: bool = False
    note: str = ""

    def matches(self, head: bytes) -> bool:
        """Whether content starting with `head` is of this format."""
        if any(head[at : at + len(sig)] == sig for at, sig in self.signatures):
            return True
        return self.recognise is not None and self.recognise(head)

    def grid(self, path: Path, index: int | None = None) -> PixelGrid:
        """Size and spacing of the file's image `index`, from its header where it has one."""
        with decoding(path, f"{self.label} file"):
            if self.geometry is not None:
                return self.geometry(path, index)
            height, width = self.decode(path, 1, [resolve_window("minmax")], index).shape[:2]
        return height, width, None, None


_FORMATS: dict[str, FileFormat] = {}


def register_reader(file_format: FileFormat) -> FileFormat:
    """Add a format (a plug-in's, or a test's toy one) to every command that reads files."""
    if not file_format.signatures and file_format.recognise is None:
        raise DatasetError(
            f"file format {file_format.name!r} needs signatures or a recognise function: "
            "stroke recognises files by their content"
        )
    if not file_format.suffixes or any(
        not s.startswith(".") or s != s.lower() for s in file_format.suffixes
    ):
        raise DatasetError(
            f"file format {file_format.name!r} has suffixes {file_format.suffixes!r}; "
            "expected lower-case suffixes such as ('.png',)"
        )
    _FORMATS[file_format.name] = file_format
    return file_format


def unregister_reader(name: str) -> None:
    """Remove a format registered at run time (tests)."""
    _FORMATS.pop(name, None)


def file_formats() -> list[FileFormat]:
    """Every registered format, in the order they are tried."""
    return list(_FORMATS.values())


def format_of_content(head: bytes) -> FileFormat | None:
    """The format whose signature the content (its first HEAD_BYTES) carries, or None."""
    return next((f for f in _FORMATS.values() if f.matches(head)), None)


def format_of(path: Path) -> FileFormat | None:
    """The format of a file on disk: by content, else by suffix (see the module), or None."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        head = b""
    return format_of_content(head) or _format_of_suffix(Path(path))


def _format_of_suffix(path: Path) -> FileFormat | None:
    name = path.name.lower()
    by_length = sorted(
        ((s, f) for f in _FORMATS.values() for s in f.suffixes), key=lambda item: -len(item[0])
    )
    return next((f for s, f in by_length if name.endswith(s)), None)


def upload_formats() -> list[FileFormat]:
    """The formats stroke-serve accepts: those with a header probe."""
    return [f for f in _FORMATS.values() if f.header is not None]


def upload_format_of(data: bytes) -> FileFormat | None:
    """The accepted upload format of the content, or None; the name is never looked at."""
    return next((f for f in upload_formats() if f.matches(data[:HEAD_BYTES])), None)


def image_suffixes() -> frozenset[str]:
    """Suffixes of the formats an image source (a folder per class, a CSV) trains on:
    single images read without HU windows."""
    return frozenset(s for f in _FORMATS.values() if not (f.hu or f.volume) for s in f.suffixes)


def searched_suffixes(volumes: bool = False) -> tuple[str, ...]:
    """What stroke-predict searches a folder for: every single-image format, volumes too
    when the model predicts them (segmenters)."""
    return tuple(
        sorted({s for f in _FORMATS.values() if volumes or not f.volume for s in f.suffixes})
    )


def describe_formats(formats: Sequence[FileFormat]) -> str:
    """`PNG, JPEG or DICOM`: the labels of `formats` as a sentence names them."""
    labels = [f.label for f in formats]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


class FileReader:
    """Reads a file of any registered format; HU formats through the model's windows.

    What every loader decodes with (training's image sources, stroke-predict, stroke-serve):
    `dicom_windows` is a preprocessing record's (None for a model trained on image files,
    which then refuses a file in HU rather than guess a window).
    """

    def __init__(self, dicom_windows: Sequence | None = None) -> None:
        self.windows = None
        if dicom_windows is not None:
            self.windows = [resolve_window(w, "dicom_windows") for w in dicom_windows]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(windows={self.windows})"

    def __call__(self, sample: Sample, in_chans: int) -> np.ndarray:
        path = Path(sample.path)
        file_format = format_of(path)
        if file_format is None:
            raise DatasetError(
                f"cannot decode image {path}: its content is not "
                f"{describe_formats(file_formats())} and its name has none of their suffixes"
            )
        if file_format.hu and self.windows is None:
            raise DatasetError(
                f"{path} is a {file_format.label} file, but this model was trained on image "
                "files and records no HU window to read it with; predict on the images it "
                "was trained on, or train with data=dicom"
            )
        with decoding(path, f"{file_format.label} file"):
            return file_format.decode(path, in_chans, self.windows, sample.slice_index)


# -- the formats stroke reads today ---------------------------------------------------------------
def _decode_pil(path: Path, in_chans: int, windows, index: int | None) -> np.ndarray:
    if index:
        raise DatasetError(f"image file {path} holds one image; image {index} does not exist")
    return read_image(path, in_chans)


def _pil_header(data: bytes) -> Header:
    """Width x height from a PNG or JPEG header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HeaderError(
            f"the image is larger than Pillow's decompression-bomb limit, refused ({err})"
        ) from None
    except Exception as err:  # Pillow raises many types for a mangled header
        # Pillow's message names the in-memory buffer object: the type says enough
        raise HeaderError(f"the image header cannot be read ({type(err).__name__})") from None
    return Header(int(width) * int(height), {})


def _pil_grid(path: Path, index: int | None) -> PixelGrid:
    with Image.open(path) as img:
        width, height = img.size
    return height, width, None, None


#: DICOM header fields a series summary needs; never logged
_SERIES_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")


def _dicom_header(data: bytes) -> Header:
    """Pixels in all frames and the series fields from the header; pixel data is not read."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception as err:  # pydicom raises many types for a damaged header
        raise HeaderError(f"the DICOM header cannot be read: {type(err).__name__}") from None
    try:
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = max(1, int(ds.get("NumberOfFrames") or 1))
        samples = max(1, int(ds.get("SamplesPerPixel") or 1))
    except (TypeError, ValueError):
        raise HeaderError(
            "the DICOM header's Rows, Columns or NumberOfFrames is not a number"
        ) from None
    if not rows or not columns:
        raise HeaderError("the DICOM file holds no image (no Rows and Columns)")
    fields: dict[str, object] = {tag: str(ds.get(tag) or "") for tag in _SERIES_TAGS}
    fields["InstanceNumber"] = _number(ds.get("InstanceNumber"))
    return Header(rows * columns * frames * samples, fields)


def _number(value: object) -> int | None:
    try:
        return int(value) if value is not None and str(value) != "" else None
    except (TypeError, ValueError):
        return None


def _decode_dicom(path: Path, in_chans: int, windows, index: int | None) -> np.ndarray:
    return read_dicom_image(path, windows, in_chans, index)


def _dicom_grid(path: Path, index: int | None) -> PixelGrid:
    ds = read_header(path)
    if ds is None:
        raise DatasetError(f"{path} is not a DICOM file")
    spacing = ds.get("PixelSpacing")
    pixel_mm = (float(spacing[0]), float(spacing[1])) if spacing else None
    between = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    return int(ds.Rows), int(ds.Columns), pixel_mm, float(between) if between else None


#: the NIfTI-1 magic at byte 344 (`n+1`: header and data in one .nii file), NIfTI-2's at 4
_NIFTI_SIGNATURES = ((344, b"n+1\x00"), (4, b"n+2\x00\r\n\x1a\n"))


def _gzipped_nifti(head: bytes) -> bool:
    """A .nii.gz file: gzip whose first few hundred decompressed bytes are a NIfTI header."""
    if not head.startswith(b"\x1f\x8b"):
        return False
    try:
        inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 348)
    except zlib.error:
        return False
    return any(inner[at : at + len(sig)] == sig for at, sig in _NIFTI_SIGNATURES)


def _decode_nifti(path: Path, in_chans: int, windows, index: int | None) -> np.ndarray:
    if index is None:
        _, n_slices, _ = volume_geometry(path)
        if n_slices != 1:
            raise DatasetError(
                f"NIfTI volume {path} has {n_slices} axial slices; a classifier reads one image "
                "per file (a segmentation model predicts whole volumes)"
            )
        index = 0
    check_windows_fit(windows, in_chans)
    return apply_windows(read_axial_slice(path, index), windows, in_chans)


def _nifti_grid(path: Path, index: int | None) -> PixelGrid:
    height, width = read_axial_slice(path, index or 0).shape
    row, column, between = axial_spacing_mm(path)
    return height, width, (row, column), between


for _builtin in (
    FileFormat("png", "PNG", (".png",), _decode_pil, ((0, b"\x89PNG\r\n\x1a\n"),),
               header=_pil_header, geometry=_pil_grid),
    FileFormat("jpeg", "JPEG", (".jpg", ".jpeg"), _decode_pil, ((0, b"\xff\xd8\xff"),),
               header=_pil_header, geometry=_pil_grid),
    FileFormat("dicom", "DICOM", (".dcm", ".dicom"), _decode_dicom, ((128, b"DICM"),),
               header=_dicom_header, geometry=_dicom_grid, hu=True,
               note="a DICOM file needs the 'DICM' marker after its 128-byte preamble"),
    FileFormat("nifti", "NIfTI", NIFTI_SUFFIXES, _decode_nifti, _NIFTI_SIGNATURES,
               recognise=_gzipped_nifti, geometry=_nifti_grid, hu=True, volume=True),
    # read for training and prediction; not accepted by stroke-serve (no header probe: each
    # decoder a server runs on a stranger's bytes is attack surface)
    FileFormat("bmp", "BMP", (".bmp",), _decode_pil, ((0, b"BM"),), geometry=_pil_grid),
    FileFormat("tiff", "TIFF", (".tif", ".tiff"), _decode_pil,
               ((0, b"II*\x00"), (0, b"MM\x00*")), geometry=_pil_grid),
    FileFormat("webp", "WebP", (".webp",), _decode_pil, (),
               recognise=lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
               geometry=_pil_grid),
):  # fmt: skip
    register_reader(_builtin)
