"""The RSNA Intracranial Hemorrhage Detection layout as samples (`data=rsna`).

Layout: `stage_2_train.csv` (rows `ID_<SOPInstanceUID>_<subtype>,Label`, six per image,
the subtypes of `RSNA_LABELS`) and the files `ID_<SOPInstanceUID>.dcm` in one flat folder
(`<root>/stage_2_train/` as Kaggle ships it, `<root>/stage_2_train_images/`, or root). An
image's label is the set of its subtypes labelled 1, `any` included (`label_set_string`;
`none` when all six are 0).
Patient, study and series come from each file's PatientID (StudyInstanceUID when blank),
StudyInstanceUID and SeriesInstanceUID; slices are ordered along the slice normal
(ImagePositionPatient on ImageOrientationPatient's normal, InstanceNumber without them).

Listing is linear in the size of the table and of the folder (`stroke.data.rsna_table`);
each labelled file's header is then read once without its pixel data. The log gives the
counts: images in the table, files found, images listed without a file, files without
labels, images with fewer than six rows (left out, the missing subtypes named), duplicate
rows kept once, corrupt files skipped (each named), and files with the offset fault. Every
file left out is in `left_out`, so in the run's skipped.csv with its reason. Two rows for
one image and subtype with different values stop the run, naming both lines.

The HU rule. Some RSNA images are stored with BitsStored 12, PixelRepresentation 0
(unsigned) and a RescaleIntercept above -100, and their stored values are HU modulo 4096
rather than HU - intercept: read with their own intercept, air comes out near +3000 HU.
The header says so (`stroke.data.dicom_pixels.has_offset_fault`), so the listing counts
those files and `read` corrects each one (the community's fix, `corrected_offset`): add
1000 to the stored values, subtract 4096 from those at or above 4096, and read them with
intercept -1000 (and the file's slope, 1 throughout RSNA). Every other file is read with
its own rescale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from stroke.data.dicom import (
    DicomImage,
    WindowedDicomReader,
    dicom_samples,
    image_record,
    plain_config,
    require_decoders,
    warn_if_patient_ids_look_blanked,
)
from stroke.data.dicom_pixels import (
    has_offset_fault,
    lenient_values,
    read_header_tags,
    truncation,
)
from stroke.data.rsna_table import (
    RSNA_LABELS,
    Joined,
    LabelTable,
    join_table,
    list_dicom_names,
    parse_label_table,
)
from stroke.data.samples import Sample
from stroke.data.windowing import WindowSpec, resolve_windows
from stroke.errors import DatasetError

__all__ = ["RSNA_LABELS", "RsnaSource"]

log = logging.getLogger(__name__)

LABELS_CSV = "stage_2_train.csv"
#: where the download keeps the files (stage 2 as Kaggle ships it, stage 1 named it so)
IMAGES_DIRS = ("stage_2_train", "stage_2_train_images")
#: The header elements the listing reads (and where the pixel data lies, never its bytes).
HEADER_TAGS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "BitsStored",
    "PixelRepresentation",
    "RescaleIntercept",
)


class RsnaSource(WindowedDicomReader):
    """The RSNA hemorrhage layout: a label table of six rows per image and a flat folder.

    Reads like `DicomSource`, through the same windows, with the offset fault corrected.

    Args:
        root: the challenge folder.
        labels_csv: the label table; None: `<root>/stage_2_train.csv`.
        images_dir: the flat folder of `ID_<SOPInstanceUID>.dcm`; None:
            `<root>/stage_2_train` or `<root>/stage_2_train_images` when one
            exists, else root.
        window: a preset (brain, subdural, stroke, bone), `{width, level}` in HU, `minmax`
            or `dicom`, as for `DicomSource`.
        multi_window: three windows stacked as the three channels (needs in_chans=3).
        progress: show a progress bar while reading the headers.
    """

    correct_offset = True

    def __init__(
        self,
        root: str | Path,
        labels_csv: str | Path | None = None,
        images_dir: str | Path | None = None,
        window: WindowSpec = "brain",
        multi_window: Sequence[WindowSpec] | None = None,
        progress: bool = True,
    ) -> None:
        self.root = Path(root)
        self.labels_csv = Path(labels_csv) if labels_csv else self.root / LABELS_CSV
        if images_dir is None:
            nested = [self.root / name for name in IMAGES_DIRS if (self.root / name).is_dir()]
            images_dir = nested[0] if nested else self.root
        self.images_dir = Path(images_dir)
        self.windows = resolve_windows(
            plain_config(window), None if multi_window is None else list(multi_window)
        )
        self.progress = progress
        self.left_out: list[tuple[str, str]] = []
        #: what the last `load` found, by kind (the numbers of the log line)
        self.counts: dict[str, int] = {}

    # -- listing ---------------------------------------------------------------------------
    def load(self) -> list[Sample]:
        """Join the table to the folder, read the labelled files' headers, one sample each."""
        self.left_out = []
        folder = self.images_dir.expanduser()
        if not folder.is_dir():
            raise DatasetError(
                f"source.images_dir={str(self.images_dir)!r} is not an existing folder "
                f"(expected the flat folder of ID_<SOPInstanceUID>.dcm files)"
            )
        table = parse_label_table(self.labels_csv.expanduser())
        names = list_dicom_names(folder)
        joined = join_table(table, names)
        self._leave_out_mismatches(joined)
        labels = {folder / name: label for name, label in joined.labelled}
        images, faulty = self._read_headers(list(labels))
        self.counts = _counts(table, names, joined, images, faulty)
        self._report(table)
        if not images:
            raise DatasetError(
                f"no RSNA image of {self.labels_csv} could be used from {self.images_dir}: "
                + _count_line(self.counts)
            )
        require_decoders(images)
        warn_if_patient_ids_look_blanked(images)
        return dicom_samples(images, labels)

    def _leave_out_mismatches(self, joined: Joined) -> None:
        table, folder = self.labels_csv.name, self.images_dir.expanduser()
        self.left_out += [
            (str(folder / f"{image}.dcm"), f"listed in {table} without its file")
            for image in joined.without_file
        ]
        self.left_out += [
            (str(folder / name), f"no labels in {table}") for name in joined.without_labels
        ]
        self.left_out += [
            (str(folder / name), f"no row in {table} for {', '.join(missing)}")
            for name, missing in joined.incomplete
        ]

    def _read_headers(self, paths: list[Path]) -> tuple[list[DicomImage], int]:
        """The labelled files' headers (no pixel data); corrupt files are left out by name."""
        images: list[DicomImage] = []
        faulty = 0
        show = self.progress and len(paths) >= 200
        with lenient_values():  # its UIDs are `ID_<hex>`, not the standard's digits
            for path in tqdm(paths, desc="reading RSNA headers", unit="file", disable=not show):
                try:
                    ds = read_header_tags(path, HEADER_TAGS)
                except DatasetError as err:
                    self.left_out.append((str(path), f"corrupt DICOM ({err.__cause__ or err})"))
                    continue
                if problem := truncation(path, ds):
                    self.left_out.append((str(path), f"corrupt DICOM ({problem})"))
                    continue
                image = image_record(path, path.name, ds)
                faulty += has_offset_fault(ds)
                images.append(image)
        return images, faulty

    def _report(self, table: LabelTable) -> None:
        counts = self.counts
        log.info("rsna: %s", _count_line(counts))
        problems = {
            "without_file": f"image(s) listed in {table.path.name} have no file in "
            f"{self.images_dir}",
            "without_labels": f"file(s) in {self.images_dir} have no labels in {table.path.name}",
            "incomplete": f"image(s) have fewer than six rows in {table.path.name}",
            "corrupt": "corrupt DICOM file(s) skipped",
        }
        for key, what in problems.items():
            if counts[key]:
                log.warning("rsna: %d %s; left out (listed in skipped.csv)", counts[key], what)
        for path, reason in [item for item in self.left_out if item[1].startswith("corrupt")][:5]:
            log.warning("rsna: skipped %s: %s", path, reason)
        if table.inconsistent_any:
            log.warning(
                "rsna: %d image(s) of %s have a subtype labelled 1 but any=0; taken as given",
                table.inconsistent_any,
                table.path,
            )
        if counts["offset_fault"]:
            log.info(
                "rsna: %d file(s) are 12-bit unsigned with RescaleIntercept > -100 (stored "
                "HU modulo 4096): corrected when read (+1000, wrap at 4096, intercept -1000)",
                counts["offset_fault"],
            )


def _counts(
    table: LabelTable, names: dict[str, str], joined: Joined, images: list, faulty: int
) -> dict[str, int]:
    return {
        "images_in_table": len(table.entries),
        "rows": table.rows + table.duplicates,
        "files": len(names),
        "without_file": len(joined.without_file),
        "without_labels": len(joined.without_labels),
        "incomplete": len(joined.incomplete),
        "duplicates": table.duplicates,
        "corrupt": len(joined.labelled) - len(images),
        "offset_fault": faulty,
        "images": len(images),
    }


def _count_line(counts: dict[str, int]) -> str:
    return (
        f"{counts['images_in_table']} image(s) in the table ({counts['rows']} rows, "
        f"{counts['duplicates']} duplicate row(s) kept once), {counts['files']} file(s) found; "
        f"{counts['without_file']} listed without a file, {counts['without_labels']} "
        f"file(s) without labels, {counts['incomplete']} with fewer than six rows, "
        f"{counts['corrupt']} corrupt file(s) skipped, {counts['offset_fault']} with the "
        f"12-bit offset fault (corrected); {counts['images']} image(s) used"
    )
