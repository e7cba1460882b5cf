"""`stroke-synth`: write the phantom dataset; a no-op when it already exists with these settings."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.synth.phantom import PhantomConfig, generate_phantom
from stroke.warnings_filter import quiet_third_party_warnings


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="synth")
def main(cfg: DictConfig) -> None:
    """Generate (or find) the phantom and print where its manifest is."""
    quiet_third_party_warnings()
    config = PhantomConfig(
        n_patients=cfg.n_patients,
        slices_per_patient=cfg.slices_per_patient,
        image_size=cfg.image_size,
        seed=cfg.seed,
    )
    manifest = generate_phantom(cfg.out_dir, config, overwrite=cfg.overwrite)
    print(f"phantom: {manifest.parent} ({manifest.name})")


if __name__ == "__main__":
    main()
