"""`stroke-synth`: write the phantom dataset; a no-op when it already exists with these settings."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.synth.phantom import PhantomConfig, generate_phantom
from stroke.synth.series import SeriesPhantomConfig, generate_series_phantom
from stroke.synth.volume_files import generate_volume_phantom
from stroke.synth.volumes import VolumePhantomConfig
from stroke.warnings_filter import quiet_third_party_warnings

#: Each layout's folder under the data folder when out_dir is not given.
_FOLDERS = {"slices": "phantom", "rsna": "phantom_rsna", "volumes": "phantom_3d"}


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="synth")
def main(cfg: DictConfig) -> None:
    """Generate (or find) the phantom and print where its labels are."""
    quiet_third_party_warnings()
    if cfg.layout not in _FOLDERS:
        raise ConfigError(f"layout={cfg.layout!r} is invalid; allowed: {', '.join(_FOLDERS)}.")
    out_dir = cfg.out_dir or Path(cfg.paths.data_dir) / _FOLDERS[cfg.layout]
    # null keys take the layout's own defaults, those of its config class
    sizes = {key: cfg[key] for key in ("n_patients", "image_size") if cfg[key] is not None}
    try:
        if cfg.layout == "volumes":
            config = VolumePhantomConfig(
                **sizes,
                slices=cfg.slices,
                spacing=cfg.spacing,
                seed=cfg.seed,
                followup_fraction=cfg.followup_fraction,
                lps_fraction=cfg.lps_fraction,
            )
            labels = generate_volume_phantom(out_dir, config, overwrite=cfg.overwrite)
        elif cfg.layout == "rsna":
            config = SeriesPhantomConfig(
                **sizes, seed=cfg.seed, slices_per_series=cfg.slices_per_series
            )
            labels = generate_series_phantom(out_dir, config, overwrite=cfg.overwrite)
        else:
            config = PhantomConfig(
                **sizes, slices_per_patient=cfg.slices_per_patient, seed=cfg.seed
            )
            labels = generate_phantom(out_dir, config, overwrite=cfg.overwrite)
    except FileExistsError as err:  # a folder in the way is the user's to resolve: one line
        raise ConfigError(f"out_dir: {err}".replace("overwrite=True", "overwrite=true")) from err
    print(f"phantom: {labels.parent} ({labels.name})")


if __name__ == "__main__":
    main()
