"""Where the Hydra configs are, where runs write, and the resolvers the configs use.

The configs are the top-level `conf/` folder of the repository; the build maps it into
the package as `stroke.conf`, so an installed wheel carries them and an editable checkout
reads the folder itself (pyproject.toml, `[tool.setuptools.package-dir]`).

Runs write under a home folder (outputs/, data/, .cache/): `STROKE_HOME` when set; else
the checkout when `stroke` runs from a source checkout (an editable install); else the
current working directory, as Hydra does by convention.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

#: The config package every command composes from (`hydra.main(config_path=CONFIG_PATH)`).
CONFIG_MODULE = "stroke.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
#: The environment variable that moves outputs, data and caches.
HOME_ENV = "STROKE_HOME"

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The repository `stroke` runs from, or None when it is installed from a wheel."""
    root = _PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "conf" / "train.yaml").is_file():
        return root
    return None


def stroke_home() -> Path:
    """The folder that holds outputs/, data/ and .cache/ by default (see the module docstring)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    return source_checkout() or Path.cwd()


def cache_home() -> Path:
    """Where decoded-image caches go without a config: `STROKE_CACHE_DIR`, else home/.cache."""
    return Path(os.environ.get("STROKE_CACHE_DIR") or stroke_home() / ".cache")


def _auto_precision(accelerator: str = "auto") -> str:
    # imported on use: composing a config must not pay for CUDA initialisation
    from stroke.hardware import auto_precision

    return auto_precision(accelerator)


def _run_name() -> str:
    # imported on use: stroke.runs sits above stroke.config (the one layering exception)
    from stroke.runs.naming import current_run_name

    return current_run_name()


def _run_dir(runs_dir: str, name: str, task: str, ckpt_path: str | None) -> str:
    from stroke.runs.resume import run_dir_resolver  # imported on use, as above

    return run_dir_resolver(runs_dir, name, task, ckpt_path)


def _config_subdir(runs_dir: str, task: str, ckpt_path: str | None, now: str) -> str:
    from stroke.runs.resume import config_subdir_resolver  # imported on use, as above

    return config_subdir_resolver(runs_dir, task, ckpt_path, now)


def _newest_checkpoint(log_dir: str, task: str) -> str:
    from stroke.runs.collect import newest_checkpoint  # imported on use, as above

    return str(newest_checkpoint(log_dir, task))


def register_resolvers() -> None:
    """Make the configs' resolvers known to OmegaConf.

    `${stroke_home:}` (see stroke_home), `${auto_precision:<accelerator>}` (bf16 on GPUs that
    support it, else fp32), `${stroke_run_name:}` (loggers list a run by the overrides
    that set it apart from the others of its sweep), and `${stroke_run_dir:...}` /
    `${stroke_config_subdir:...}` (a resumed run continues in its own directory,
    stroke/runs/resume.py), and `${stroke_newest_checkpoint:<log dir>,<task>}` (the last
    checkpoint of the newest finished run of a preset, for a preset that fine-tunes it).
    """
    resolvers = {
        "stroke_home": lambda: str(stroke_home()),
        "auto_precision": _auto_precision,
        "stroke_run_name": _run_name,
        "stroke_run_dir": _run_dir,
        "stroke_config_subdir": _config_subdir,
        "stroke_newest_checkpoint": _newest_checkpoint,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def config_default(entry: str, key: str | None = None):
    """A default as a config file of `conf/` states it (`config_default("optimizer/adamw")`,
    `config_default("data/_base", "image_size")`): code that needs a default outside a
    composed run (a module built in a notebook, a test) reads it here, so it lives once."""
    from importlib.resources import files

    node = OmegaConf.create(files(CONFIG_MODULE).joinpath(f"{entry}.yaml").read_text())
    value = node if key is None else OmegaConf.select(node, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
