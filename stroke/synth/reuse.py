"""Whether a phantom folder can be reused as it is: one rule for every layout that records
its settings in phantom.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def reusable(
    out_dir: Path,
    config: object,
    settings: dict[str, object],
    index_name: str,
    only_generated: Callable[[Path], bool],
    remove_generated: Callable[[Path], None],
    overwrite: bool,
    record_name: str = "phantom.json",
) -> bool:
    """True when out_dir already holds this phantom (its record's settings are `settings`
    and its index file `index_name` exists); clears what stands in its way otherwise.

    A folder of other content raises FileExistsError unless `overwrite`; a folder of nothing
    but generated files without a record is an interrupted write, started again.
    """
    if not (out_dir.is_dir() and any(out_dir.iterdir())):
        return False
    try:
        existing = json.loads((out_dir / record_name).read_text())
    except (OSError, ValueError):
        existing = None
    same = isinstance(existing, dict) and existing.get("settings") == settings
    if same and (out_dir / index_name).is_file():
        return True
    # without phantom.json, a folder of nothing but generated files is a write that was
    # interrupted (Ctrl-C, a full disk): start it again
    interrupted = existing is None and only_generated(out_dir)
    if not overwrite and not interrupted:
        raise FileExistsError(
            f"{out_dir} is not empty and does not hold a phantom with {config}; "
            "pass overwrite=True to replace the generated files, or choose another folder."
        )
    remove_generated(out_dir)
    return False
