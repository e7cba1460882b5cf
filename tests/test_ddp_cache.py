"""DDP ranks share one image cache: built once, read by every rank, nothing decoded again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY

# A callback each rank runs: which cache it reads and how often it fell back to decoding.
_PROBE = textwrap.dedent(
    """
    import json
    from pathlib import Path

    import lightning as L


    class CacheProbe(L.Callback):
        def __init__(self, out):
            self.out = Path(out)

        def on_train_end(self, trainer, pl_module):
            cache = trainer.datamodule.image_cache
            record = {"path": str(cache.path), "misses": cache.misses, "built": cache.built}
            (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    """
)


@pytest.mark.slow
def test_ddp_ranks_read_one_shared_cache(phantom_dir, tmp_path):
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "cache_probe.py").write_text(_PROBE)
    cache_dir = tmp_path / "cache"
    cmd = [
        sys.executable, "-m", "stroke.cli.train",
        *(o for o in TINY if not o.startswith(("trainer.devices", "data.batch_size"))),
        # 9 training images: batches of 3 give each rank batches (of 8, none would be left
        # once the single-image last batch is dropped)
        "data.batch_size=3",
        f"data.root={phantom_dir}", "model=cnn_small", f"data.cache_dir={cache_dir}",
        "trainer=ddp_sim", "test=false", f"hydra.run.dir={tmp_path / 'run'}",
        "+callbacks.probe._target_=cache_probe.CacheProbe", f"+callbacks.probe.out={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "probe")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["path"] == ranks[1]["path"]  # one store for both ranks
    assert [r["misses"] for r in ranks] == [0, 0]  # every image came from it
    stores = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    assert len(stores) == 1  # built once, before the ranks started
    # the leakage check's signatures live beside it, stored once too
    assert len(list(stores[0].glob("leakage-*"))) == 1
