"""Intensity windowing: Hounsfield units (or any scanner values) to the uint8 the model sees.

A window is a width and a level (centre) in HU: values from level - width/2 to
level + width/2 map linearly to 0..255, everything outside is clipped. CT volumes carry
about 4000 HU of range while a stroke lives in a few tens of HU, so the window decides
what the network can see; several windows stacked as channels give it more than one view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stroke.errors import ConfigError


@dataclass(frozen=True)
class Window:
    """A display window in HU: `level - width/2 .. level + width/2` becomes 0..255."""

    width: float
    level: float

    @property
    def low(self) -> float:
        """HU value shown black."""
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        """HU value shown white."""
        return self.level + self.width / 2.0


#: Named windows (width, level) of head CT reading.
WINDOW_PRESETS: dict[str, Window] = {
    "brain": Window(width=80, level=40),
    "subdural": Window(width=200, level=80),
    "stroke": Window(width=40, level=40),
    "bone": Window(width=2800, level=600),
}
#: Windows that are not fixed HU ranges: each image's own min..max, or the file's
#: WindowCenter/WindowWidth (DICOM only).
ADAPTIVE_WINDOWS = ("minmax", "dicom")
#: The usual multi-window set for head CT: brain, subdural and bone as three channels.
DEFAULT_MULTI_WINDOW = ("brain", "subdural", "bone")

WindowSpec = str | Window | Mapping[str, float]


def window_hu(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU values through a window to uint8: `level -/+ width/2` -> 0/255, clipped outside."""
    if not width > 0:
        raise ConfigError(f"window width must be > 0 HU, got {width!r}")
    low = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def window_minmax(values: np.ndarray) -> np.ndarray:
    """Stretch an image's own min..max to 0..255 (MRI and other data without absolute units)."""
    values = np.asarray(values, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return window_hu(np.nan_to_num(values, nan=low), high - low, (high + low) / 2.0)


def resolve_window(spec: WindowSpec, key: str = "window") -> Window | str:
    """A preset name, `{width, level}` or Window as a Window; `minmax`/`dicom` stay names."""
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        name = spec.lower()
        if name in WINDOW_PRESETS:
            return WINDOW_PRESETS[name]
        if name in ADAPTIVE_WINDOWS:
            return name
        raise ConfigError(
            f"{key}={spec!r} is not a window; expected one of "
            f"{sorted(WINDOW_PRESETS) + list(ADAPTIVE_WINDOWS)} or {{width: W, level: L}} in HU"
        )
    if isinstance(spec, Mapping) and set(spec) == {"width", "level"}:
        try:
            window = Window(width=float(spec["width"]), level=float(spec["level"]))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}={dict(spec)!r}: width and level must be numbers") from err
        if not window.width > 0:
            raise ConfigError(f"{key}={dict(spec)!r}: width must be > 0 HU")
        return window
    raise ConfigError(
        f"{key}={spec!r} is not a window; expected a preset name "
        f"({', '.join(WINDOW_PRESETS)}), 'minmax', 'dicom' or {{width: W, level: L}}"
    )


def resolve_windows(
    window: WindowSpec, multi_window: Sequence[WindowSpec] | None = None
) -> list[Window | str]:
    """The windows that become the channels: `window` alone, or the three of `multi_window`."""
    if multi_window is None:
        return [resolve_window(window, "window")]
    if isinstance(multi_window, str | Mapping):
        raise ConfigError(
            f"multi_window={multi_window!r} must be a list of three windows, e.g. "
            f"[{', '.join(DEFAULT_MULTI_WINDOW)}]"
        )
    windows = [resolve_window(w, f"multi_window[{i}]") for i, w in enumerate(multi_window)]
    if len(windows) != 3:
        raise ConfigError(
            f"multi_window needs three windows (one per channel), got {len(windows)}: "
            f"{list(multi_window)}"
        )
    return windows


def check_windows_fit(windows: Sequence[Window | str], in_chans: int) -> None:
    """Three stacked windows are three channels: they need `data.in_chans=3`."""
    if len(windows) == 3 and in_chans != 3:
        raise ConfigError(
            f"multi_window ({describe_windows(windows)}) stacks three windows as channels, so "
            f"it needs data.in_chans=3, got in_chans={in_chans}"
        )


def apply_windows(
    values: np.ndarray,
    windows: Sequence[Window | str],
    in_chans: int,
    header_window: Window | None = None,
) -> np.ndarray:
    """A 2-D array of HU (or scanner values) as uint8 HxWxC, one channel per window.

    `header_window` is what the `dicom` window means (the file's own WindowCenter/Width);
    without one, `dicom` falls back to the image's min..max.
    """
    channels = []
    for window in windows:
        if window == "dicom" and header_window is not None:
            window = header_window
        if isinstance(window, Window):
            channels.append(window_hu(values, window.width, window.level))
        else:
            channels.append(window_minmax(values))
    image = np.stack(channels, axis=-1)
    if image.shape[-1] == 1 and in_chans == 3:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


def windows_record(windows: Sequence[Window | str]) -> list[dict[str, float] | str]:
    """Windows as plain values (`{width, level}` in HU, or `minmax`/`dicom`) for a checkpoint.

    `resolve_window` reads each entry back.
    """
    return [
        {"width": float(w.width), "level": float(w.level)} if isinstance(w, Window) else str(w)
        for w in windows
    ]


def describe_windows(windows: Sequence[Window | str]) -> str:
    """Short text naming the windows, for logs and cache keys (`W80/L40+W200/L80+...`)."""
    parts = [f"W{w.width:g}/L{w.level:g}" if isinstance(w, Window) else str(w) for w in windows]
    return "+".join(parts)
