"""Listing a folder source: every image once, hidden things skipped, in path order."""

from __future__ import annotations

import numpy as np
from conftest import write_image

from stroke.data import FolderSource


def test_folder_listing_skips_hidden_things_and_keeps_path_order(tmp_path):
    pixels = np.zeros((4, 4), np.uint8)
    names = ["b/P2_s0.png", "a-b/P1_s0.PNG", "a/P1_s1.jpg", "a/sub/P3_s0.png", "P0_s0.png"]
    for name in names:
        write_image(tmp_path / "normal" / name, pixels)
        write_image(tmp_path / "stroke" / name, pixels)
    write_image(tmp_path / "normal" / ".hidden" / "P9_s0.png", pixels)  # a hidden folder
    write_image(tmp_path / "normal" / "a" / ".P8_s0.png", pixels)  # a hidden file
    (tmp_path / "normal" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "normal" / "folder.png").mkdir()  # a folder named like an image

    samples = FolderSource(tmp_path).load()
    normal = [s.path for s in samples if s.label == "normal"]
    expected = sorted(tmp_path / "normal" / name for name in names)
    assert normal == expected  # Path order: "a" before "a-b", as sorted(Path) has it
    assert [s.label for s in samples] == ["normal"] * 5 + ["stroke"] * 5
