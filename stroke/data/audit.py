"""What the data leaves out or gets wrong, said out loud: never a silent result.

`audit_samples` runs on every source's samples before splitting: an image listed twice
with two labels is an error (it would train under both); listed twice with one label, or
with an empty label, it is left out. `left_out_files` walks the data folder for files no
sample uses (not an image, hidden, outside the class folders, in a linked folder that is
not followed, a broken link, no label in the CSV) and says why for each. `split_warnings`
names a validation or test split without images of a class: its recall and ROC AUC are
undefined there (null in metrics.json, never a fake 0 or 1).

The datamodule logs one warning per kind, with a count and an example, keeps the lines in
`data_warnings` (copied into metrics.json) and writes every left-out file, with its reason,
to `<run>/skipped.csv`.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stroke.data.readers import image_suffixes
from stroke.data.samples import SPLITS, Sample
from stroke.errors import DatasetError
from stroke.io import atomic_writer

SKIPPED_CSV = "skipped.csv"
#: folders a source never reads images from (lesion masks beside the images)
MASK_FOLDERS = frozenset({"masks", "mask"})
#: files that hold no image: left out as expected (logged, listed, not warned about)
DOCUMENT_SUFFIXES = frozenset(
    {".csv", ".tsv", ".json", ".txt", ".md", ".yaml", ".yml", ".xml", ".pdf", ".html", ".log",
     ".py", ".ipynb", ".xlsx", ".xls", ".zip", ".tar", ".npy", ".npz", ".pt", ".ckpt"}
)  # fmt: skip
#: what DICOM sources skip as a matter of course (stroke.data.dicom)
EXPECTED_DICOM_SKIPS = ("not DICOM", "DICOMDIR", "structured report (SR)", "without pixel data")


@dataclass(frozen=True)
class LeftOut:
    """A file (or folder) the run does not use, and why; `notable` ones are warned about
    (an image the user may think is used), the others (documents, hidden files, masks)
    only logged."""

    path: str
    reason: str
    notable: bool = True


def _key(sample: Sample) -> tuple[str, int | None]:
    return os.path.normpath(str(sample.path)), sample.slice_index


def audit_samples(samples: Sequence[Sample], where: str) -> tuple[list[Sample], list[LeftOut]]:
    """Drop empty labels and repeated listings (naming them); conflicting labels are an error."""
    kept: dict[tuple[str, int | None], Sample] = {}
    left_out: list[LeftOut] = []
    conflicts: list[str] = []
    for sample in samples:
        label = str(sample.label).strip()
        if not label:
            left_out.append(LeftOut(str(sample.path), f"an empty label in {where}"))
            continue
        key = _key(sample)
        first = kept.get(key)
        if first is None:
            kept[key] = replace(sample, label=label) if label != sample.label else sample
        elif first.label != label:
            conflicts.append(f"{sample.path} is labelled both {first.label!r} and {label!r}")
        else:
            left_out.append(LeftOut(str(sample.path), f"listed twice in {where} (kept once)"))
    if conflicts:
        more = f" (and {len(conflicts) - 3} more)" if len(conflicts) > 3 else ""
        raise DatasetError(
            f"{len(conflicts)} image(s) in {where} have two different labels: "
            f"{'; '.join(conflicts[:3])}{more}",
            hint="give each image one label (fix or remove the duplicate rows)",
        )
    return list(kept.values()), left_out


# -- files under the data folder that no sample uses ----------------------------------------
def data_folder(source: object) -> Path | None:
    """The folder a source reads from: its root, or the folder of its CSV's images."""
    for attribute in ("root", "image_root"):
        value = getattr(source, attribute, None)
        if value is not None:
            return Path(value).expanduser()
    csv_path = getattr(source, "csv_path", None)
    return Path(csv_path).expanduser().parent if csv_path is not None else None


def left_out_files(
    source: object, samples: Sequence[Sample], accounted: Sequence[LeftOut] = ()
) -> list[LeftOut]:
    """Every file under the source's folder that no sample (or mask) uses, with the reason
    (files in `accounted` are left out already, for a reason of their own)."""
    root = data_folder(source)
    if root is None or not root.is_dir():
        return []
    used = {os.path.normpath(str(s.path)) for s in samples}
    used |= {os.path.normpath(item.path) for item in accounted}
    used |= {os.path.normpath(str(s.mask_path)) for s in samples if s.mask_path is not None}
    for attribute in ("csv_path", "labels_csv"):  # the source's own label table
        value = getattr(source, attribute, None)
        if value is not None:
            used.add(os.path.normpath(str(value)))
    known = {os.path.normpath(p): r for p, r in getattr(source, "left_out", [])}
    ignored = set(MASK_FOLDERS) | {str(d).lower() for d in getattr(source, "ignore_dirs", ())}
    if getattr(source, "mask_dir", None):
        ignored.add(str(source.mask_dir).lower())
    out: list[LeftOut] = []
    walked: set[str] = set()
    for path, kind in _walk(root, ignored):
        name = os.path.normpath(str(path))
        walked.add(name)
        if name in used:
            continue
        if kind == "link":
            out.append(LeftOut(str(path), "a linked folder, not followed: copy it in or point "
                               "data.root at it"))  # fmt: skip
        elif kind == "ignored":
            files = sum(len(f) for _, _, f in os.walk(path))
            out.append(LeftOut(str(path), f"a folder of masks / ignored ({files} files)", False))
        elif name in known:
            reason = known[name]
            out.append(LeftOut(str(path), reason, reason not in EXPECTED_DICOM_SKIPS))
        else:
            out.append(LeftOut(str(path), *_reason(path, root, source)))
    # what the source left out that is not a file here (an image its table lists without
    # a file, a file in another folder) is said too
    out += [LeftOut(p, r, r not in EXPECTED_DICOM_SKIPS) for p, r in known.items()
            if p not in walked and p not in used]  # fmt: skip
    return sorted(out, key=lambda item: not item.notable)


def unused_inputs(folders: Iterable[Path], used: Iterable[Path]) -> list[LeftOut]:
    """Files under input folders (stroke-predict) that are not among the files predicted."""
    taken = {os.path.normpath(str(p)) for p in used}
    out: list[LeftOut] = []
    for folder in folders:
        for path, kind in _walk(Path(folder), set()):
            if os.path.normpath(str(path)) in taken:
                continue
            if kind == "link":
                out.append(LeftOut(str(path), "a linked folder, not followed"))
                continue
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
            document = _suffix(path) in DOCUMENT_SUFFIXES
            reason = (
                "hidden"
                if hidden
                else f"not an image or DICOM file ({_suffix(path) or 'no extension'})"
            )
            out.append(LeftOut(str(path), reason, not (hidden or document)))
    return sorted(out, key=lambda item: not item.notable)


def _suffix(path: Path) -> str:
    """`.png`, or `.nii.gz` for compressed volumes (lower case)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _walk(root: Path, ignored: set[str]) -> Iterable[tuple[Path, str]]:
    """Files under root ("file"; links to files too), and folders not entered: links to
    folders ("link") and ignored folders such as masks ("ignored")."""
    for folder, dirs, files in os.walk(root):
        entered = []
        for d in sorted(dirs):
            if os.path.islink(os.path.join(folder, d)):
                yield Path(folder, d), "link"
            elif d.lower() in ignored:
                yield Path(folder, d), "ignored"
            else:
                entered.append(d)
        dirs[:] = entered
        for f in sorted(files):
            yield Path(folder, f), "file"


def _reason(path: Path, root: Path, source: object) -> tuple[str, bool]:
    """Why a file no sample uses is left out, and whether that deserves a warning."""
    relative = path.relative_to(root)
    suffix = _suffix(path)
    if path.is_symlink() and not path.exists():
        return f"a broken link (to {os.readlink(path)})", True
    if any(part.startswith(".") for part in relative.parts):
        return "hidden (its name or a folder's starts with '.')", False
    if suffix in DOCUMENT_SUFFIXES:
        return f"not an image ({suffix})", False
    kind = type(source).__name__
    if kind in ("FolderSource", "PresplitSource"):
        if path.suffix.lower() in image_suffixes():
            return "an image outside the class folders", True
        return f"not read by {kind} ({suffix or 'no extension'}): e.g. data=dicom reads DICOM", True
    if kind == "CsvSource":
        return (
            f"not listed in {Path(source.csv_path).name}",
            path.suffix.lower() in image_suffixes(),
        )
    return f"not used by {kind}", True


# -- splits ----------------------------------------------------------------------------------
def split_warnings(samples: Sequence[Sample], class_names: Sequence[str]) -> list[str]:
    """A line for each validation or test split that holds no image of some class."""
    warnings = []
    for split in SPLITS[1:]:
        counts = Counter(s.label for s in samples if s.split == split)
        if not counts:
            continue
        missing = [c for c in class_names if not counts.get(c)]
        if missing:
            warnings.append(
                f"the {split} split ({sum(counts.values())} images) has no image of class "
                f"{', '.join(map(repr, missing))}: recall and ROC AUC of "
                f"{'that class' if len(missing) == 1 else 'those classes'} are undefined on it "
                "(null in metrics.json) and macro means leave it out"
            )
    return warnings


# -- reporting -------------------------------------------------------------------------------
def summarize(left_out: Sequence[LeftOut], where: str, notable: bool = True) -> str | None:
    """`3 file(s) of X left out (listed in skipped.csv): 2 not listed in labels.csv (e.g.
    ...); 1 a broken link ...`, for the notable ones (or the others)."""
    items = [item for item in left_out if item.notable == notable]
    if not items:
        return None
    reasons = Counter(item.reason for item in items)
    example: dict[str, str] = {}
    for item in items:
        example.setdefault(item.reason, item.path)
    parts = [f"{n} {reason} (e.g. {example[reason]})" for reason, n in reasons.most_common()]
    return f"{len(items)} file(s) of {where} left out (see {SKIPPED_CSV}): " + "; ".join(parts)


def write_left_out(left_out: Sequence[LeftOut], path: Path) -> Path | None:
    """`skipped.csv` (path, reason), atomically; nothing when nothing was left out."""
    if not left_out:
        return None

    with atomic_writer(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "reason", "warned"])
        writer.writerows([item.path, item.reason, int(item.notable)] for item in left_out)
    return path


def check_files(samples: Sequence[Sample]) -> None:
    """Every sample's file exists (a broken link, a file gone) and is not empty."""
    missing, empty = [], []
    for sample in samples:
        try:
            if sample.path.stat().st_size == 0:
                empty.append(sample.path)
        except OSError:
            missing.append(sample.path)
    if missing:
        link = " (a broken link)" if missing[0].is_symlink() else ""
        raise DatasetError(
            f"{len(missing)} image file(s) cannot be read, e.g. {missing[0]}{link}",
            hint="fix or remove them",
        )
    if empty:
        raise DatasetError(
            f"{len(empty)} image file(s) are empty (0 bytes), e.g. {empty[0]}; "
            "re-export or remove them"
        )
