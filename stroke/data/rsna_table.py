"""The RSNA hemorrhage label table and its join to a flat folder of files, in linear time.

`stage_2_train.csv` has a header `ID,Label` and six rows per image,
`ID_<SOPInstanceUID>_<subtype>,<0|1>`, one per subtype of `RSNA_LABELS`. The table is
streamed row by row (stdlib `csv`) into one dict keyed by the image id `ID_<uid>`, each
value a 12-bit integer: bit i says that subtype i has a row, bit 6 + i its value. The
folder is listed once with `os.scandir`; the join is one dict lookup per image. Nothing
is sorted or searched per row, so 750,000 images and 4.5 million rows take seconds
(`experiments/bench_rsna_listing.py`, `experiments/rsna_listing.md`).

What the table gets wrong is said, never absorbed: a row whose ID does not parse, or whose
Label is not 0 or 1, is an error naming the line; the same (image, subtype) twice with one
value is kept once and counted, with two values an error naming both lines and values; an
image with fewer than six rows is returned with the subtypes it lacks (the source leaves
it out, naming them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stroke.data.label_table import iter_csv_rows
from stroke.data.samples import label_set_string
from stroke.errors import DatasetError

#: The RSNA subtypes in the challenge's spelling and order, then `any` (any hemorrhage).
RSNA_LABELS = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
    "any",
)
#: The table's columns, and the prefix of every image id.
ID_COLUMN, LABEL_COLUMN, ID_PREFIX = "ID", "Label", "ID_"
DICOM_SUFFIX = ".dcm"
_BIT = {name: 1 << i for i, name in enumerate(RSNA_LABELS)}
_ALL_SEEN = (1 << len(RSNA_LABELS)) - 1
_VALUE_SHIFT = len(RSNA_LABELS)
_VALUES = {"0": 0, "1": 1}
#: every combination of positive subtypes (the value bits) as a Sample's label, computed once
_LABEL_OF_VALUES = tuple(
    label_set_string(name for i, name in enumerate(RSNA_LABELS) if values >> i & 1)
    for values in range(1 << len(RSNA_LABELS))
)


@dataclass
class LabelTable:
    """The parsed table: `entries[image id]` packs which subtypes have a row and their values."""

    path: Path
    entries: dict[str, int]
    rows: int = 0
    #: rows that repeat an earlier one exactly (kept once)
    duplicates: int = 0
    #: images whose `any` is 0 while a subtype is 1 (taken as given, warned about)
    inconsistent_any: int = 0

    def label(self, image_id: str) -> str:
        """The image's label set string (`none` when all six are 0)."""
        return _LABEL_OF_VALUES[self.entries[image_id] >> _VALUE_SHIFT]

    def missing(self, image_id: str) -> tuple[str, ...]:
        """The subtypes the image has no row for (empty when it has all six)."""
        seen = self.entries[image_id]
        return tuple(name for name, bit in _BIT.items() if not seen & bit)


def parse_label_table(csv_path: str | Path) -> LabelTable:
    """Stream `stage_2_train.csv` into a LabelTable; errors name the line (and both lines of
    a conflict)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(
            f"source.labels_csv={str(csv_path)!r} does not exist (the RSNA label table, "
            "stage_2_train.csv with rows ID_<SOPInstanceUID>_<subtype>,Label)"
        )
    rows = iter_csv_rows(csv_path, "source.labels_csv")
    id_i, label_i = _header(next(rows, (1, []))[1], csv_path)
    width = max(id_i, label_i)
    table = LabelTable(csv_path, {})
    entries = table.entries
    for line, row in rows:
        if len(row) <= width:
            if not any(cell.strip() for cell in row):
                continue
            raise DatasetError(f"line {line} of {csv_path} has too few columns: {row}")
        ident, text = row[id_i].strip(), row[label_i].strip()
        image, _, subtype = ident.rpartition("_")
        bit, value = _BIT.get(subtype), _VALUES.get(text)
        if bit is None or len(image) <= len(ID_PREFIX) or not image.startswith(ID_PREFIX):
            raise DatasetError(
                f"line {line} of {csv_path}: ID {ident!r} is not ID_<SOPInstanceUID>_<subtype> "
                f"with a subtype of {', '.join(RSNA_LABELS)}"
            )
        if value is None:
            raise DatasetError(
                f"line {line} of {csv_path}: Label {text!r} of {ident} is not 0 or 1"
            )
        packed = entries.get(image, 0)
        if packed & bit:
            if bool(packed >> _VALUE_SHIFT & bit) != bool(value):
                raise _conflict(csv_path, (id_i, label_i), ident, (line, text))
            table.duplicates += 1
            continue
        entries[image] = packed | bit | (bit << _VALUE_SHIFT if value else 0)
        table.rows += 1
    if not entries:
        raise DatasetError(f"the RSNA label table {csv_path} has no data rows")
    table.inconsistent_any = _count_inconsistent_any(entries)
    return table


def _header(header: list[str], csv_path: Path) -> tuple[int, int]:
    names = [h.strip() for h in header]
    if ID_COLUMN not in names or LABEL_COLUMN not in names:
        raise DatasetError(
            f"{csv_path} does not look like the RSNA label table: its header is {names}, "
            f"expected {ID_COLUMN},{LABEL_COLUMN} (rows ID_<SOPInstanceUID>_<subtype>,0|1)"
        )
    return names.index(ID_COLUMN), names.index(LABEL_COLUMN)


def _conflict(
    csv_path: Path, columns: tuple[int, int], ident: str, later: tuple[int, str]
) -> DatasetError:
    """The error for a row contradicting an earlier one; the earlier line is found by reading
    the table again up to here (only on this error path, so the parse keeps no line numbers)."""
    (id_i, label_i), (line, text) = columns, later
    first_line, first_text = 0, "?"
    for number, row in iter_csv_rows(csv_path, "source.labels_csv"):
        if number >= line:
            break
        if len(row) > max(id_i, label_i) and row[id_i].strip() == ident:
            first_line, first_text = number, row[label_i].strip()
            break
    return DatasetError(
        f"{csv_path}: {ident} is labelled twice with different values: line {first_line} "
        f"({ident},{first_text}) and line {line} ({ident},{text})",
        hint="keep one of the two rows",
    )


def _count_inconsistent_any(entries: dict[str, int]) -> int:
    subtypes = _ALL_SEEN & ~_BIT["any"]
    any_bit = _BIT["any"]
    return sum(
        1 for packed in entries.values()
        if (packed >> _VALUE_SHIFT) & subtypes and not (packed >> _VALUE_SHIFT) & any_bit
    )  # fmt: skip


def list_dicom_names(folder: str | Path) -> dict[str, str]:
    """`{image id: file name}` of the `.dcm` files directly in `folder` (hidden ones skipped),
    from one `os.scandir`: no stat per file, no sort."""
    names: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name[-4:].lower() == DICOM_SUFFIX and name[0] != "." and entry.is_file():
                names[name[:-4]] = name
    return names


@dataclass
class Joined:
    """The table joined to the folder: what is labelled, and every kind of mismatch."""

    #: (file name, label) of images with a file and all six rows
    labelled: list[tuple[str, str]] = field(default_factory=list)
    #: image ids in the table without a file
    without_file: list[str] = field(default_factory=list)
    #: file names without a row in the table
    without_labels: list[str] = field(default_factory=list)
    #: (file name, the subtypes without a row) of images with fewer than six rows
    incomplete: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def join_table(table: LabelTable, names: dict[str, str]) -> Joined:
    """One pass over the table and one over the folder, a dict lookup each."""
    joined = Joined()
    for image, packed in table.entries.items():
        name = names.get(image)
        if name is None:
            joined.without_file.append(image)
        elif packed & _ALL_SEEN != _ALL_SEEN:
            joined.incomplete.append((name, table.missing(image)))
        else:
            joined.labelled.append((name, _LABEL_OF_VALUES[packed >> _VALUE_SHIFT]))
    entries = table.entries
    joined.without_labels = [name for image, name in names.items() if image not in entries]
    return joined
