"""`stroke-cv path=<multirun dir>`: the cross-validation summary of a fold sweep, by hand.

`stroke-train -m data.fold=0,1,2,3,4` writes it by itself at the end of the sweep; this
command rewrites it (e.g. after a crashed fold was re-run) or writes it elsewhere (`out=`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.cli.positional import positional_path
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError
from stroke.runs.cross_validation import SUMMARY_MD, write_cv_summary
from stroke.warnings_filter import quiet_third_party_warnings


@command
@positional_path("path")
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="cv")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-cv`: prints the summary and where it was written."""
    quiet_third_party_warnings()
    try:
        path = write_cv_summary(cfg.path, cfg.out)
    except FileNotFoundError as err:
        raise ConfigError(f"path={cfg.path!r}: {err}") from err
    print(path.with_name(SUMMARY_MD).read_text())
    print(f"written: {path} and {path.with_name(SUMMARY_MD)}")


if __name__ == "__main__":
    main()
