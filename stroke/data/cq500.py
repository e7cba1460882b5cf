"""The CQ500 head CT layout as samples (`data=cq500`): scan-level reads on every slice.

Layout: a folder per scan, `<root>/CQ500-CT-<n>/` (the collection's own `CQ500CT<n>
CQ500CT<n>` is read as the same name), its DICOM files at any depth below, and `reads.csv`
with one row per scan: `name` (`CQ500-CT-<n>`), `Category`, and each reader's 0/1 findings,
`R1:ICH, R1:IPH, R1:IVH, R1:SDH, R1:EDH, R1:SAH, ...`, for readers R1..R3. A finding is
positive by majority of the readers (at least 2 of 3); ICH is `any`, the others the RSNA
subtypes (`stroke.data.rsna.RSNA_LABELS`). Every slice of a scan gets the scan's label set
(`label_set_string`), so a slice-level model trained or evaluated on it is judged by the
scan's reads: meant for scan-level evaluation, where the slices' outputs are pooled per
series.

Files, headers and pixels are `DicomSource`'s: the same scan, skips and windows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from stroke.data.dicom import DicomImage, DicomSource
from stroke.data.label_table import read_csv_rows
from stroke.data.samples import label_set_string
from stroke.data.windowing import WindowSpec
from stroke.errors import DatasetError

log = logging.getLogger(__name__)

READS_CSV = "reads.csv"
#: CQ500's finding columns (after `R<k>:`) and the RSNA label each one is.
CQ500_FINDINGS = {
    "ICH": "any",
    "IPH": "intraparenchymal",
    "IVH": "intraventricular",
    "SDH": "subdural",
    "EDH": "epidural",
    "SAH": "subarachnoid",
}
_SCAN_FOLDER = re.compile(r"^CQ500[-_ ]?CT[-_ ]?(\d+)\b", re.IGNORECASE)
_READER_COLUMN = re.compile(r"^R(\d+):(\w+)$")


def scan_name(folder: str) -> str | None:
    """`CQ500-CT-<n>` for a scan folder's name (`CQ500-CT-12`, `CQ500CT12 CQ500CT12`)."""
    match = _SCAN_FOLDER.match(folder.strip())
    return f"CQ500-CT-{int(match.group(1))}" if match else None


def read_cq500_labels(reads_csv: Path) -> dict[str, str]:
    """`{scan name: label set string}` from reads.csv, each finding by majority of readers."""
    rows = read_csv_rows(reads_csv, "source.reads_csv")
    if not rows:
        raise DatasetError(f"reads.csv {reads_csv} is empty")
    header = [h.strip() for h in rows[0]]
    if "name" not in header:
        raise DatasetError(f"{reads_csv} has no `name` column; its columns are {header}")
    readers = _reader_columns(header, reads_csv)
    name_i = header.index("name")
    labels: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise DatasetError(f"line {line} of {reads_csv} has too few columns: {row}")
        name = scan_name(row[name_i]) or row[name_i].strip()
        label = label_set_string(
            CQ500_FINDINGS[finding]
            for finding, columns in readers.items()
            if 2 * sum(_read(row[i], reads_csv, line, header[i]) for i in columns) > len(columns)
        )
        if labels.get(name, label) != label:
            raise DatasetError(
                f"{reads_csv}: scan {name} has two rows with different reads "
                f"({labels[name]!r}, then {label!r} on line {line}); keep one"
            )
        labels[name] = label
    return labels


def _reader_columns(header: list[str], reads_csv: Path) -> dict[str, list[int]]:
    """The column of every reader's read of each finding; every finding needs every reader."""
    by_finding: dict[str, dict[int, int]] = {finding: {} for finding in CQ500_FINDINGS}
    for i, name in enumerate(header):
        match = _READER_COLUMN.match(name)
        if match and match.group(2) in by_finding:
            by_finding[match.group(2)][int(match.group(1))] = i
    readers = sorted({r for columns in by_finding.values() for r in columns})
    incomplete = [f for f, columns in by_finding.items() if sorted(columns) != readers]
    if not readers or incomplete:
        raise DatasetError(
            f"{reads_csv} does not have every reader's column for every finding "
            f"({', '.join(incomplete or CQ500_FINDINGS)}): expected R1:ICH ... R3:SAH; "
            f"its columns are {header}"
        )
    return {finding: list(columns.values()) for finding, columns in by_finding.items()}


def _read(cell: str, reads_csv: Path, line: int, column: str) -> int:
    value = cell.strip()
    if value not in ("0", "1"):
        raise DatasetError(f"line {line} of {reads_csv}: {column}={value!r} is not 0 or 1")
    return int(value)


class Cq500Source(DicomSource):
    """CQ500 scans `<root>/CQ500-CT-<n>/**/*.dcm` with reads.csv's majority labels per scan.

    Args:
        root: the folder holding the scan folders.
        reads_csv: the collection's reads.csv; None: `<root>/reads.csv`.
        window, multi_window, progress: as for `DicomSource`.
    """

    def __init__(
        self,
        root: str | Path,
        reads_csv: str | Path | None = None,
        window: WindowSpec = "brain",
        multi_window: Sequence[WindowSpec] | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(root, window=window, multi_window=multi_window, progress=progress)
        self.labels_csv = Path(reads_csv) if reads_csv else Path(root) / READS_CSV

    def _labels(self, images: list[DicomImage]) -> dict[Path, str]:
        if not self.labels_csv.is_file():
            raise DatasetError(
                f"source.reads_csv={str(self.labels_csv)!r} does not exist (CQ500's reads.csv, "
                "one row per scan: name, Category, R1:ICH ... R3:SAH)"
            )
        by_scan = read_cq500_labels(self.labels_csv)
        scans = {img.path: scan_name(img.relative.split("/", 1)[0]) for img in images}
        found = set(scans.values())
        unread = [name for name in by_scan if name not in found]
        if unread:
            log.info(
                "cq500: %d of %d scan(s) in %s have no folder under %s (e.g. %s)",
                len(unread),
                len(by_scan),
                self.labels_csv,
                self.root,
                unread[0],
            )
        return {path: by_scan[name] for path, name in scans.items() if name in by_scan}
