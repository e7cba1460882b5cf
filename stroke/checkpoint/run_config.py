"""The run a checkpoint comes from: its composed config, and the preprocessing it records."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stroke.checkpoint.format import datamodule_record
from stroke.checkpoint.upgrade import upgrade_run_config
from stroke.data.preprocessing import Preprocessing
from stroke.data.windowing import resolve_windows, windows_record
from stroke.errors import ConfigError

log = logging.getLogger(__name__)


def run_config_of(ckpt_path: str | Path) -> DictConfig | None:
    """The composed config of the run a checkpoint comes from (moved classes renamed), or
    None: `<run>/.hydra/config.yaml` for `<run>/checkpoints/x.ckpt`."""
    config_path = Path(ckpt_path).expanduser().resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_path.is_file():
        return None
    return upgrade_run_config(OmegaConf.load(config_path))


def checkpoint_preprocessing(checkpoint: dict, path: Path) -> Preprocessing | None:
    """From the checkpoint's record, else (files older than the record) the run's config."""
    record = datamodule_record(checkpoint)
    if not record:
        run_cfg = run_config_of(path)
        if run_cfg is None or "data" not in run_cfg:
            return None
        record = OmegaConf.to_container(run_cfg.data, resolve=True)
        record = {**record, "dicom_windows": _dicom_windows_of_run(record)}
        log.info("preprocessing of %s read from its run's .hydra/config.yaml", path)
    try:
        return Preprocessing.from_record(record)
    except ConfigError:
        return None


def _dicom_windows_of_run(data: dict) -> list | None:
    """The HU windows of a run's data config whose source reads in HU (it has `window`)."""
    source = data.get("source") or {}
    if "window" not in source:
        return None
    return windows_record(resolve_windows(source["window"], source.get("multi_window")))
