"""What every served model's card says about its input and its file, whatever its task.

stroke-serve shows a model card (`GET /api/model`, the page header); the parts that do not
depend on the task (the not-a-medical-device notice, the input a network is fed, the
checkpoint's hash) live here so each task's serve part builds its card from the same words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from stroke.data.preprocessing import Preprocessing
from stroke.data.windowing import WINDOW_PRESETS, describe_windows, resolve_window

NOTICE = (
    "Not a medical device. For research and demonstration only: not for diagnosis, "
    "treatment or any clinical decision."
)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoints_sha256(path: Path, members: Sequence[Path]) -> str:
    """The checkpoint's SHA-256; of an ensemble, that of its members' hashes in order."""
    if not members:
        return file_sha256(path)
    digest = hashlib.sha256()
    for member in members:
        digest.update(file_sha256(Path(member)).encode())
    return digest.hexdigest()


def input_card(preprocessing: Preprocessing) -> dict[str, object]:
    """The card's input fields: size, channels, mean/std, the DICOM windows it reads."""
    windows = preprocessing.dicom_windows
    resolved = [resolve_window(w) for w in windows] if windows else None
    return {
        "input_size": preprocessing.image_size,
        "in_chans": preprocessing.in_chans,
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "reads_dicom": resolved is not None,
        "dicom_windows": describe_windows(resolved) if resolved else None,
        "dicom_window_names": _preset_names(resolved) if resolved else None,
        "window_presets": list(WINDOW_PRESETS),
    }


def checkpoint_card(path: Path, members: Sequence[Path], sha256: str) -> dict[str, str]:
    """The card's checkpoint: its file (` + 4 more` for an ensemble), run folder, hash."""
    more = f" + {len(members) - 1} more" if members else ""
    return {"file": path.name + more, "run": path.resolve().parent.parent.name, "sha256": sha256}


def _preset_names(windows: list) -> list[str]:
    """The preset name of each window (`brain`), or its W/L text when it is none."""
    names = {w: name for name, w in WINDOW_PRESETS.items()}
    return [names.get(w, describe_windows([w])) for w in windows]
