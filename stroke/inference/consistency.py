"""A checkpoint's preprocessing wins over a data group's defaults: evaluation and prediction
see images as training did, and say so.

`stroke-eval ckpt_path=... data=<group>` used to build the data at the group's defaults
(224 px, 3 channels) whatever the model was trained at: a 64 px model scored at 224 px,
silently wrong. `align_preprocessing` puts the checkpoint's size, channels and
normalisation into the data config, unless the command line sets them (`data.image_size=`,
...), which is then a warning naming both values; `check_windows` refuses DICOM windows
that differ from training's unless the command line set them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from stroke.data.preprocessing import PREPROCESSING_FIELDS, Preprocessing
from stroke.data.windowing import describe_windows, resolve_window
from stroke.errors import ConfigError

log = logging.getLogger(__name__)

#: data.* keys that are part of a checkpoint's preprocessing record: its fields but the DICOM
#: windows, which come from data.source (WINDOW_KEYS)
PREPROCESSING_KEYS = tuple(k for k in PREPROCESSING_FIELDS if k != "dicom_windows")
WINDOW_KEYS = ("data.source.window", "data.source.multi_window")


def describe(preprocessing: Preprocessing) -> str:
    """`64 px, 1 channel(s), mean [0.5], std [0.25]` (+ DICOM windows)."""
    text = (
        f"{preprocessing.image_size} px, {preprocessing.in_chans} channel(s), "
        f"mean {list(preprocessing.mean)}, std {list(preprocessing.std)}"
    )
    if preprocessing.equalize:
        text += f", {preprocessing.equalize} equalisation"
    if preprocessing.normalization != "fixed":
        text += f", {preprocessing.normalization} normalisation"
    if preprocessing.context_slices:
        text += f", {preprocessing.context_slices} neighbouring slice(s) on each side"
    if preprocessing.dicom_windows:
        windows = [resolve_window(w) for w in preprocessing.dicom_windows]
        text += f", DICOM windows {describe_windows(windows)}"
    return text


def _given(overrides: Sequence[str]) -> set[str]:
    """The keys the command line sets (`data.image_size=64` -> `data.image_size`)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


def align_preprocessing(
    data_cfg: DictConfig, preprocessing: Preprocessing | None, overrides: Sequence[str]
) -> tuple[DictConfig, str]:
    """`data_cfg` with the checkpoint's preprocessing where the command line leaves it, and
    a phrase saying where the preprocessing came from (for the log and the report)."""
    if preprocessing is None:
        return data_cfg, "the data config (the checkpoint records no preprocessing)"
    given = _given(overrides)
    data_cfg = data_cfg.copy()
    record = preprocessing.record()
    kept = []
    for key in PREPROCESSING_KEYS:
        value = record[key]
        current = data_cfg.get(key)
        current = OmegaConf.to_object(current) if OmegaConf.is_config(current) else current
        if f"data.{key}" in given:
            if _differs(current, value):
                kept.append(f"data.{key}={current}")
                log.warning(
                    "data.%s=%s from the command line, but the checkpoint was trained with %s: "
                    "the model sees images unlike its training images",
                    key, current, value,
                )  # fmt: skip
            continue
        OmegaConf.update(data_cfg, key, value, force_add=True)
    origin = f"the checkpoint ({describe(preprocessing)})"
    if kept:
        origin += f", overridden by {', '.join(kept)}"
    log.info("preprocessing: %s", origin)
    return data_cfg, origin


def _differs(current: object, value: object) -> bool:
    if isinstance(value, str) or value is None or isinstance(current, str) or current is None:
        return current != value
    as_list = lambda v: [float(x) for x in v] if isinstance(v, list | tuple) else [float(v)]  # noqa: E731
    try:
        a, b = as_list(current), as_list(value)
    except (TypeError, ValueError):
        return True
    return a != b and not (len(set(a)) == 1 and len(set(b)) == 1 and a[0] == b[0])


def check_windows(
    data_preprocessing: Preprocessing, preprocessing: Preprocessing | None, overrides: Sequence[str]
) -> None:
    """DICOM windows of the data against the checkpoint's: a mismatch is a ConfigError
    unless the command line chose the windows (then only a warning)."""
    if preprocessing is None or not preprocessing.dicom_windows:
        return
    trained = describe_windows([resolve_window(w) for w in preprocessing.dicom_windows])
    used = describe_windows(
        [resolve_window(w) for w in (data_preprocessing.dicom_windows or ())] or ["none"]
    )
    if trained == used:
        return
    if _given(overrides) & set(WINDOW_KEYS):
        log.warning("DICOM windows %s from the command line; the checkpoint used %s", used, trained)
        return
    raise ConfigError(
        f"the checkpoint was trained on DICOM windows {trained}, but the data config reads {used}",
        hint=f"set data.source.window / data.source.multi_window to {trained}",
    )
