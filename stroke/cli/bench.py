"""`stroke-bench [stroke-train overrides]`: how fast the configured experiment trains.

Prints one table (also `bench.md` / `bench.json` in the run directory); the figures and
what each measures are described in stroke/bench/__init__.py and docs/speed.md.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from stroke.bench.run import run_bench
from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.io import atomic_write_json, atomic_write_text
from stroke.warnings_filter import quiet_third_party_warnings


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="bench")
def main(cfg: DictConfig) -> None:
    """Run the benchmark, print the table and keep it as bench.md / bench.json in the run dir."""
    quiet_third_party_warnings()
    given = list(HydraConfig.get().overrides.task)
    # the start-up run gets the experiment's overrides, not the benchmark's own
    experiment = [o for o in given if not o.lstrip("+~").startswith(("bench.", "hydra."))]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    report = run_bench(cfg, experiment)
    command = " ".join(["stroke-bench", *given])
    text = f"{report.markdown()}\n\ncommand: `{command}`\n"
    run_dir = Path(cfg.paths.output_dir)
    atomic_write_text(run_dir / "bench.md", text)
    figures = {"command": command, **report.figures}
    atomic_write_json(run_dir / "bench.json", figures)
    print(f"\n{text}")


if __name__ == "__main__":
    main()
