"""A CSV that labels images by a key (a SOPInstanceUID, a relative path, a patient id)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from stroke.errors import DatasetError


def read_csv_rows(csv_path: Path, key: str) -> list[list[str]]:
    """The rows of a CSV; a file that is not text CSV is a DatasetError naming it and the line."""
    return [row for _, row in iter_csv_rows(csv_path, key)]


def iter_csv_rows(csv_path: Path, key: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, row) of a CSV, streamed: a label table of millions of rows is never
    held whole. A file that is not text CSV is a DatasetError naming it and the line."""
    line = 0
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for row in reader:
                line = reader.line_num
                yield line, row
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{key}={str(csv_path)!r} is not UTF-8 text (line {_undecodable_line(csv_path)}: "
            f"{err.reason}); expected a CSV file",
            hint="save it as CSV (UTF-8) from your spreadsheet program",
        ) from err
    except csv.Error as err:
        raise DatasetError(
            f"{key}={str(csv_path)!r} line {line + 1}: {err}; expected a CSV file"
        ) from err
    except OSError as err:
        raise DatasetError(f"{key}={str(csv_path)!r} cannot be read: {err.strerror}") from err


def _undecodable_line(csv_path: Path) -> int:
    """The first line of the file that is not UTF-8 (the reader decodes ahead in chunks)."""
    for number, line in enumerate(csv_path.read_bytes().splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 1


def read_label_table(csv_path: str | Path, key_column: str, label_column: str) -> dict[str, str]:
    """Read `key -> label` from a CSV; a key labelled twice with different labels is an error."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"CSV of labels {str(csv_path)!r} does not exist (source.labels_csv)")
    rows = read_csv_rows(csv_path, "source.labels_csv")
    if not rows:
        raise DatasetError(f"CSV of labels {csv_path} is empty")
    header = [h.strip() for h in rows[0]]
    for key, name in (("csv_key_column", key_column), ("label_column", label_column)):
        if name not in header:
            raise DatasetError(
                f"source.{key}={name!r} is not a column of {csv_path}; its columns are {header}"
            )
    key_i, label_i = header.index(key_column), header.index(label_column)
    labels: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if max(key_i, label_i) >= len(row):
            raise DatasetError(f"line {line_no} of {csv_path} has too few columns: {row}")
        key, label = row[key_i].strip(), row[label_i].strip()
        if key in labels and labels[key] != label:
            raise DatasetError(
                f"{key_column} {key!r} is labelled both {labels[key]!r} and {label!r} in "
                f"{csv_path} (line {line_no}); one label per key"
            )
        labels[key] = label
    if not labels:
        raise DatasetError(f"CSV of labels {csv_path} has no data rows")
    return labels


def check_all_keys_found(
    labels: dict[str, str], found: Iterable[str], what: str, csv_path: Path, where: str
) -> None:
    """Raise naming the CSV keys that match no image: a typo or a wrong folder, not data."""
    unknown = sorted(set(labels) - set(found))
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise DatasetError(
            f"{len(unknown)} {what}(s) in {csv_path} match no image under {where}: {shown}; "
            "check source.labels_csv, source.csv_key and data.root"
        )
