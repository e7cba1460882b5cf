"""The image cache at scale: larger than the process may allocate, and read all the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import write_image

# Builds a cache of 400 images of 256 x 256 x 3 (75 MB), then reads all of it in a
# process whose private memory (RLIMIT_DATA: heap and anonymous maps) may grow by 32 MB
# only. The store is a file mapping, which the limit does not count: its pages come and
# go with the page cache. Copying the store into the heap must fail, or the limit proved
# nothing.
_CAPPED = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    import numpy as np
    from stroke.data.cache import ImageCache

    items = sorted(Path(sys.argv[1]).glob("*.png"))

    def loader(path):
        value = int(path.stem) % 251
        return np.full((256, 256, 3), value, dtype=np.uint8)

    def data_kb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1])

    ImageCache(loader, items, sys.argv[2], progress=False)
    cap = (data_kb() + 32 * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    cache = ImageCache(loader, items, sys.argv[2], progress=False)
    assert not cache.built
    for item in items:
        assert cache(item)[0, 0, 0] == int(item.stem) % 251
    print("read", cache.nbytes // 2**20, "MB")
    try:
        np.array(np.load(cache.path / "images.npy", mmap_mode="r"))
    except MemoryError:
        print("copy refused")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA as on Linux")
def test_a_cache_larger_than_the_memory_cap_is_read_through_the_mapping(tmp_path):
    for i in range(400):
        write_image(tmp_path / "items" / f"{i:03d}.png", np.zeros((4, 4), np.uint8))
    result = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(tmp_path / "items"), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read 75 MB" in result.stdout  # more than twice the cap
    assert "copy refused" in result.stdout
