"""HU windowing: each preset shows its HU range as 0..255; multi-window gives distinct channels."""

from __future__ import annotations

import numpy as np
import pytest

from stroke.data.windowing import (
    WINDOW_PRESETS,
    Window,
    apply_windows,
    check_windows_fit,
    resolve_windows,
    window_hu,
)
from stroke.errors import ConfigError

EXPECTED_RANGES = {  # preset: (HU shown black, HU shown white)
    "brain": (0, 80),
    "subdural": (-20, 180),
    "stroke": (20, 60),
    "bone": (-800, 2000),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_RANGES))
def test_each_preset_maps_its_hu_range_to_0_255(name):
    low, high = EXPECTED_RANGES[name]
    window = WINDOW_PRESETS[name]
    hu = np.array([low - 500, low, (low + high) / 2, high, high + 500], dtype=np.float32)
    out = window_hu(hu, window.width, window.level)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255]
    # linear inside the window: a quarter of the way up is a quarter of 255
    assert window_hu(np.array([low + (high - low) / 4]), window.width, window.level)[0] == 64


def test_window_is_monotonic_and_clipped():
    hu = np.linspace(-1100, 3100, 500)
    out = window_hu(hu, 80, 40).astype(int)
    assert np.all(np.diff(out) >= 0)
    assert out.min() == 0 and out.max() == 255


def test_multi_window_gives_three_different_channels():
    # a ramp from air to bone: each window shows a different part of it
    hu = np.tile(np.linspace(-1000, 2000, 64, dtype=np.float32), (8, 1))
    windows = resolve_windows("brain", ["brain", "subdural", "bone"])
    image = apply_windows(hu, windows, in_chans=3)
    assert image.shape == (8, 64, 3) and image.dtype == np.uint8
    brain, subdural, bone = (image[:, :, c].astype(int) for c in range(3))
    assert not np.array_equal(brain, subdural)
    assert not np.array_equal(subdural, bone)
    assert not np.array_equal(brain, bone)
    # 1000 HU (dense bone) is white in the brain window and grey in the bone window
    col = int(np.argmin(np.abs(np.linspace(-1000, 2000, 64) - 1000)))
    assert brain[0, col] == 255 and 0 < bone[0, col] < 255


def test_single_window_fills_every_channel_the_same():
    hu = np.random.default_rng(0).uniform(-100, 200, (6, 6))
    image = apply_windows(hu, resolve_windows("brain"), in_chans=3)
    assert np.array_equal(image[:, :, 0], image[:, :, 2])


def test_custom_and_adaptive_windows():
    assert resolve_windows({"width": 350, "level": 50}) == [Window(350, 50)]
    values = np.array([[100.0, 300.0], [200.0, 300.0]])
    minmax = apply_windows(values, resolve_windows("minmax"), in_chans=1)
    assert minmax[:, :, 0].tolist() == [[0, 255], [128, 255]]
    # `dicom` uses the file's window when there is one
    header = apply_windows(values, resolve_windows("dicom"), 1, header_window=Window(200, 200))
    assert header[:, :, 0].tolist() == [[0, 255], [128, 255]]


@pytest.mark.parametrize(
    "window, multi, message",
    [
        ("lung_nope", None, "window='lung_nope' is not a window"),
        ({"width": 0, "level": 40}, None, "width must be > 0"),
        ("brain", ["brain", "bone"], "needs three windows"),
        ("brain", "brain", "must be a list of three windows"),
    ],
)
def test_bad_window_settings_are_named(window, multi, message):
    with pytest.raises(ConfigError, match=message):
        resolve_windows(window, multi)


def test_multi_window_needs_three_channels():
    with pytest.raises(ConfigError, match="needs data.in_chans=3, got in_chans=1"):
        check_windows_fit(resolve_windows("brain", ["brain", "subdural", "bone"]), 1)
