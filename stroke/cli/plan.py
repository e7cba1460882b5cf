"""`stroke-plan`: the volume plan of a 3-D dataset, measured on its training split, as YAML.

nnU-Net's planning step on its own: read the training scans' fingerprint (spacings, shapes,
foreground intensities), choose the target spacing, patch, batch for the device's memory and
network depth, and write them where a user can read and change them before training with
`data.plan=<file>`. Training with `data.plan=auto` runs the same step itself.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.data.volume_plan import write_plan
from stroke.errors import ConfigError
from stroke.warnings_filter import quiet_third_party_warnings


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="plan")
def main(cfg: DictConfig) -> None:
    """Write the plan and print what it chose."""
    quiet_third_party_warnings()
    out = Path(str(cfg.out)).expanduser()
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"out={str(out)!r} exists; give another out= or overwrite=true")
    if out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a folder; expected a file name like plan.yaml")
    datamodule = instantiate(cfg.data, _recursive_=True)
    if not hasattr(datamodule, "make_plan"):
        raise ConfigError(
            f"data={type(datamodule).__name__} is not a volume dataset (data=volumes)"
        )
    plan = datamodule.make_plan()
    write_plan(plan, out)
    train = datamodule.split_samples("train")
    levels = len(plan.strides)
    print(
        f"plan: {len(train)} training scans; spacing {plan.spacing} mm, patch {plan.patch_size}, "
        f"batch {plan.batch_size} (for {plan.memory_budget_mb} MB), {levels} levels, "
        f"intensity {plan.intensity['scheme']}"
    )
    print(f"plan: written to {out}; train with data.plan={out}")


if __name__ == "__main__":
    main()
