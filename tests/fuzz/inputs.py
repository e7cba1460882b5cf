"""Bad files by kind: each writer makes one file at the path it is given.

Images, DICOM slices, NIfTI volumes, label CSVs and checkpoints: damaged (truncated,
random, mangled), hostile (bombs, loops, pipes, pickles that run code), contradictory
(headers that disagree with their data) or merely unusual (other modes and bit depths,
which the readers must convert rather than refuse).
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from bad_inputs import bomb_png, png_chunk, truncated
from dicom_factory import ct_dataset, head_slice_hu
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag

Writer = Callable[[Path], object]
RNG = np.random.default_rng(26)


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _grey(size: int = 24) -> np.ndarray:
    image = RNG.integers(0, 60, (size, size), dtype=np.uint8)
    image[4:12, 4:12] = 220
    return image


def _saved(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def _truncated_png(path: Path) -> Path:
    return truncated(_png(path, RNG.integers(0, 255, (64, 64), dtype=np.uint8)))


def _truncated_jpeg(path: Path) -> Path:
    image = Image.fromarray(RNG.integers(0, 255, (64, 64), dtype=np.uint8))
    return truncated(_saved(path, image, format="JPEG"), 0.4)


def _bad_crc_png(path: Path) -> Path:
    data = bytearray(_png(path, _grey()).read_bytes())
    data[45] ^= 0xFF  # inside IDAT: its CRC no longer matches
    path.write_bytes(bytes(data))
    return path


def _idat_garbage_png(path: Path) -> Path:
    header = png_chunk(b"IHDR", (24).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0]))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", os.urandom(64)) + png_chunk(b"IEND", b"")
    )
    return path


def _symlink_loop(path: Path) -> Path:
    other = path.with_name(f".{path.name}.loop")
    path.symlink_to(other)
    other.symlink_to(path)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # a reader that opens it waits for a writer that never comes
    return path


IMAGES: dict[str, Writer] = {
    "truncated_png": _truncated_png,
    "truncated_jpeg": _truncated_jpeg,
    "zero_bytes": lambda p: p.write_bytes(b""),
    "random_bytes": lambda p: p.write_bytes(os.urandom(2048)),
    "png_signature_then_text": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png" * 8),
    "text_named_png": lambda p: p.write_text("this is a text file\n"),
    "bomb_png": bomb_png,
    "bomb_warning_png": lambda p: bomb_png(p, 10_000, 10_000),
    "bad_crc_png": _bad_crc_png,
    "idat_garbage_png": _idat_garbage_png,
    "png_16bit": lambda p: _png(p, (RNG.integers(0, 4096, (24, 24))).astype(np.uint16)),
    "png_1bit": lambda p: _saved(p, Image.fromarray(_grey() > 100)),
    "png_palette_transparent": lambda p: _saved(
        p, Image.fromarray(_grey()).convert("P"), transparency=0
    ),
    "png_rgba": lambda p: _saved(p, Image.fromarray(_grey()).convert("RGBA")),
    "png_la": lambda p: _saved(p, Image.fromarray(_grey()).convert("LA")),
    "png_constant": lambda p: _png(p, np.zeros((24, 24), dtype=np.uint8)),
    "png_1x1": lambda p: _png(p, np.zeros((1, 1), dtype=np.uint8)),
    "png_1x600": lambda p: _png(p, np.zeros((1, 600), dtype=np.uint8)),
    "jpeg_cmyk": lambda p: _saved(p, Image.fromarray(_grey()).convert("CMYK"), format="JPEG"),
    "tiff_float32": lambda p: _saved(
        p.with_suffix(".tif"), Image.fromarray(RNG.normal(0, 1, (24, 24)).astype(np.float32))
    ),
    "tiff_nan": lambda p: _saved(
        p.with_suffix(".tif"), Image.fromarray(np.full((24, 24), np.nan, dtype=np.float32))
    ),
    "tiff_int32": lambda p: _saved(
        p.with_suffix(".tif"), Image.fromarray(RNG.integers(-5, 5, (24, 24)).astype(np.int32))
    ),
    "bmp_1bit": lambda p: _saved(p.with_suffix(".bmp"), Image.fromarray(_grey() > 100)),
    "png_trailing_garbage": lambda p: p.write_bytes(
        _png(p, _grey()).read_bytes() + os.urandom(512)
    ),
    "folder_named_png": lambda p: p.mkdir(),
    "dangling_symlink": lambda p: p.symlink_to(p.with_name("does-not-exist.png")),
    "symlink_loop": _symlink_loop,
    "fifo_named_png": _fifo,
}


# -- DICOM ---------------------------------------------------------------------------------
def _dicom(path: Path, change: Callable | None = None, implicit: bool = False) -> Path:
    ds = copy.deepcopy(ct_dataset(head_slice_hu(32, True, RNG), patient_id="BAD01"))
    if change is not None:
        change(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return path


def _raw(keyword: str, vr: str, value: bytes) -> Callable:
    def change(ds) -> None:
        tag = Tag(keyword)
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)

    return change


def _syntax(uid: str, fragment: bytes = b"\x00" * 64) -> Callable:
    def change(ds) -> None:
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = encapsulate([fragment])

    return change


def _without(*keywords: str) -> Callable:
    def change(ds) -> None:
        for keyword in keywords:
            delattr(ds, keyword)

    return change


def _setting(**values) -> Callable:
    def change(ds) -> None:
        for key, value in values.items():
            setattr(ds, key, value)

    return change


def _structured_report(ds) -> None:
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.Modality = "SR"
    del ds.PixelData


DICOMS: dict[str, Writer] = {
    "no_rows": lambda p: _dicom(p, _without("Rows")),
    "no_pixel_data": lambda p: _dicom(p, _without("PixelData")),
    "no_patient_id": lambda p: _dicom(p, _without("PatientID")),
    "private_transfer_syntax": lambda p: _dicom(p, _syntax("1.3.6.1.4.1.9999.1")),
    "mpeg2_transfer_syntax": lambda p: _dicom(p, _syntax("1.2.840.10008.1.2.4.100")),
    "jpeg_claimed_garbage_inside": lambda p: _dicom(p, _syntax("1.2.840.10008.1.2.4.50")),
    "rle_claimed_garbage_inside": lambda p: _dicom(p, _syntax("1.2.840.10008.1.2.5")),
    "bits_allocated_7": lambda p: _dicom(p, _setting(BitsAllocated=7)),
    "rows_disagree_with_pixels": lambda p: _dicom(p, _setting(Rows=4000)),
    "three_samples_monochrome": lambda p: _dicom(p, _setting(SamplesPerPixel=3)),
    "five_frames_one_stored": lambda p: _dicom(p, _setting(NumberOfFrames=5)),
    "pixel_representation_5": lambda p: _dicom(p, _setting(PixelRepresentation=5)),
    "rescale_slope_text": lambda p: _dicom(p, _raw("RescaleSlope", "DS", b"abc ")),
    "window_width_zero": lambda p: _dicom(p, _setting(WindowCenter=40, WindowWidth=0)),
    "position_text": lambda p: _dicom(p, _raw("ImagePositionPatient", "DS", b"a\\b\\c ")),
    "photometric_unknown": lambda p: _dicom(p, _setting(PhotometricInterpretation="FOO")),
    "structured_report": lambda p: _dicom(p, _structured_report),
    "truncated_pixels": lambda p: truncated(_dicom(p), 0.7),
    "truncated_header": lambda p: truncated(_dicom(p), 0.05),
    "garbage_after_dicm": lambda p: p.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(400)),
    "preamble_only": lambda p: p.write_bytes(b"\0" * 128 + b"DICM"),
    "empty_dcm": lambda p: p.write_bytes(b""),
    "text_named_dcm": lambda p: p.write_text("PatientID: nobody\n"),
}


# -- NIfTI -----------------------------------------------------------------------------------
def volume(n_slices: int = 4, size: int = 16, seed: int = 0) -> np.ndarray:
    """An HU volume (x, y, z) in RAS order: brain at 30 HU, air around, a lesion."""
    rng = np.random.default_rng(seed)
    vol = np.full((size, size, n_slices), -1000.0, dtype=np.float32)
    vol[2:-2, 2:-2, :] = 30.0 + rng.normal(0, 2, (size - 4, size - 4, n_slices))
    vol[5:8, 5:8, :] = 60.0
    return vol.astype(np.int16)


def write_volume(path: Path, data: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), path)
    return path


def _nifti(name: str, data: np.ndarray, keep: float | None = None) -> Writer:
    def write(path: Path) -> Path:
        written = write_volume(path.with_name(name), data)
        return truncated(written, keep) if keep else written

    return write


def _mangled_header(path: Path) -> None:
    good = write_volume(path.with_name("mangled.nii"), volume(4, 32)).read_bytes()
    path.with_name("mangled.nii").write_bytes(good[:100] + os.urandom(248) + good[348:])


NIFTIS: dict[str, Writer] = {
    "truncated_gz": _nifti("cut.nii.gz", volume(6, 64), 0.6),
    "truncated_raw": _nifti("cut.nii", volume(6, 64), 0.7),
    "truncated_gz_header": _nifti("head.nii.gz", volume(6, 64), 0.02),
    "mangled_header": _mangled_header,
    "random_gzip": lambda p: p.with_name("random.nii.gz").write_bytes(
        b"\x1f\x8b" + os.urandom(600)
    ),
    "two_dimensional": _nifti("flat.nii.gz", np.zeros((16, 16), dtype=np.int16)),
    "five_dimensional": _nifti("five.nii.gz", np.zeros((8, 8, 2, 2, 2), dtype=np.int16)),
    "nan_volume": _nifti("nan.nii.gz", np.full((16, 16, 3), np.nan, dtype=np.float32)),
    "empty_nii": lambda p: p.with_name("empty.nii").write_bytes(b""),
}


# -- label CSVs ------------------------------------------------------------------------------
def _rows(images: list[str], labels: list[str]) -> list[str]:
    return [f"{i},{label}" for i, label in zip(images, labels, strict=True)]


def csv_variants(images: list[str], labels: list[str]) -> dict[str, bytes]:
    """labels.csv contents for the images (`path,label` rows), each broken one way."""
    good = ["path,label", *_rows(images, labels)]
    text = "\n".join(good) + "\n"
    first = images[0]
    return {
        "latin1_label": text.replace(labels[0], "h\xe9morragie", 1).encode("latin-1"),
        "utf16_bom": text.encode("utf-16"),
        "utf8_bom": b"\xef\xbb\xbf" + text.encode(),
        "nul_byte": text.replace(first, first + "\0", 1).encode(),
        "duplicate_same_label": (text + f"{first},{labels[0]}\n").encode(),
        "duplicate_other_label": (text + f"{first},not-{labels[0]}\n").encode(),
        "empty_label_cell": text.replace(f"{first},{labels[0]}", f"{first},", 1).encode(),
        "empty_path_cell": (text + f",{labels[0]}\n").encode(),
        "no_label_column": text.replace("path,label", "path,diagnosis", 1).encode(),
        "header_only": b"path,label\n",
        "empty_file": b"",
        "missing_image_row": (text + f"images/nope.png,{labels[0]}\n").encode(),
        "path_outside_root": (text + f"../../etc/passwd,{labels[0]}\n").encode(),
        "crlf_lines": text.replace("\n", "\r\n").encode(),
        "label_with_spaces": text.replace(f",{labels[0]}\n", f", {labels[0]} \n", 1).encode(),
        "semicolons": text.replace(",", ";").encode(),
        "quoted_newline": (text + f'"{first}","{labels[0]}\nsecond line"\n').encode(),
        "ragged_row": (text + f"{first},{labels[0]},extra,cells\n").encode(),
    }


# -- checkpoints -----------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this calls os.system: what weights_only=True must refuse."""

    def __reduce__(self):
        return (os.system, ("echo this checkpoint ran code > /dev/null",))


def _zip_without_data(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3\n")


def checkpoint_variants(real: Path) -> dict[str, Writer]:
    """Checkpoint files, from a real stroke-train checkpoint `real` where one is needed."""
    import torch
    from safetensors.torch import save_file

    def torch_save(content) -> Writer:
        return lambda p: torch.save(content, p)

    def reworked(change: Callable[[dict], None]) -> Writer:
        def write(path: Path) -> None:
            content = torch.load(real, weights_only=True)
            change(content)
            torch.save(content, path)

        return write

    def bump_version(content: dict) -> None:
        content["stroke"]["format_version"] = 999  # a newer stroke's checkpoint

    def other_head(content: dict) -> None:
        name = [k for k, v in content["state_dict"].items() if v.ndim == 2][-1]
        content["state_dict"][name] = torch.zeros(7, content["state_dict"][name].shape[1])

    return {
        "truncated_ckpt": lambda p: p.write_bytes(real.read_bytes()[: real.stat().st_size // 2]),
        "empty_ckpt": lambda p: p.write_bytes(b""),
        "random_ckpt": lambda p: p.write_bytes(os.urandom(4096)),
        "json_named_ckpt": lambda p: p.write_text('{"state_dict": {}}'),
        "bare_state_dict": torch_save({"conv1.weight": torch.zeros(2, 1, 3, 3)}),
        "other_lightning_project": torch_save(
            {"state_dict": {"layer.weight": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}
        ),
        "runs_code_when_unpickled": lambda p: p.write_bytes(pickle.dumps(_RunsCode())),
        "zip_without_data": _zip_without_data,
        "safetensors_file": lambda p: save_file({"fc.weight": torch.zeros(2, 2)}, str(p)),
        "future_format_version": reworked(bump_version),
        "head_of_another_shape": reworked(other_head),
        "no_hyper_parameters": reworked(lambda content: content.pop("hyper_parameters")),
        "folder_named_ckpt": lambda p: p.mkdir(),
        "tensor_not_dict": torch_save(torch.zeros(3)),
    }


def save_bytes(data: bytes) -> Writer:
    return lambda p: p.write_bytes(data)


def buffer_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(_grey()).save(out, format="PNG")
    return out.getvalue()
