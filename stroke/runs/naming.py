"""What sets a run apart: the keys its sweep varies, and a run name made of their values.

TensorBoard and MLflow list runs by this name (`model=resnet18,model.optimizer.lr=0.0003`)
instead of by folder (`multiruns/<date>/3`). In a sweep only the swept keys count: those
with a sweep value (`a,b`, `range(...)`, `choice(...)`, `interval(...)`) on the command
line, kept by Hydra in `<sweep dir>/multirun.yaml`, or in `hydra.sweeper.params` (Optuna
searches, grid sweeps set in a config). A single run is named by its command-line overrides.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

#: The name of a run without overrides.
DEFAULT_RUN_NAME = "default"
#: Longer names are cut and end in a hash of the whole name, so they stay distinct (a
#: 6-parameter Optuna trial fits; file systems allow 255 bytes).
MAX_RUN_NAME = 160
_HASH_CHARS = 8
# a name is one folder: no separators, nothing a shell or another OS would stumble on
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+\-~@()\[\]]")
# Optuna's floats (0.00012345678901) read as 0.0001235 in a name
_SIGNIFICANT_DIGITS = 4


class Override(NamedTuple):
    """One command-line override: `+trainer.x=3` is typed `+trainer.x`, key `trainer.x`, `3`."""

    typed: str
    key: str
    value: str | None  # None: a deletion without a value (`~callbacks.x`)

    @classmethod
    def parse(cls, text: str) -> Override:
        typed, equals, value = str(text).partition("=")
        return cls(typed, typed.lstrip("+~").split("@")[0], value if equals else None)

    def label(self) -> str:
        """`key=value` as it reads in a run name (a long float shortened)."""
        return self.typed if self.value is None else f"{self.typed}={_short_value(self.value)}"


def current_run_name() -> str:
    """The run name of the Hydra job running now (`default` outside one): see `run_name`."""
    hydra = _hydra_config()
    return run_name(hydra) if hydra is not None else DEFAULT_RUN_NAME


def run_name(hydra: Any) -> str:
    """`key=value,...` of the overrides that set this run apart, safe as a folder name.

    `hydra` is the job's Hydra config (`HydraConfig.get()`, or `cfg.hydra`).
    """
    name = ",".join(override.label() for override in differing_overrides(hydra))
    return safe_run_name(name or DEFAULT_RUN_NAME)


def differing_overrides(hydra: Any) -> list[Override]:
    """This run's overrides that its sweep varies, in the sweep's order; a single run: all."""
    overrides = [Override.parse(text) for text in _task_overrides(hydra)]
    swept = swept_keys(hydra)
    if not swept:
        return overrides
    by_key = {o.key: o for o in overrides}
    return [by_key[key] for key in swept if key in by_key]


def swept_keys(hydra: Any) -> list[str]:
    """The config keys (or groups) the run's sweep varies; empty for a single run."""
    if str(_get(hydra, "mode")) not in ("MULTIRUN", "RunMode.MULTIRUN"):
        return []
    specs = _sweep_specs(hydra)
    return [key for key, text in specs.items() if _is_sweep(text)]


def _sweep_specs(hydra: Any) -> dict[str, str]:
    """`key -> override text` of the sweep: the sweeper's params, then the command's overrides.

    A command-line value replaces the sweeper's for its key: a plain value takes the key out
    of an Optuna search, a sweep value replaces its range.
    """
    params = _get(_get(hydra, "sweeper"), "params") or {}
    specs = {str(key): f"{key}={value}" for key, value in params.items()}
    for text in _command_overrides(hydra):
        specs[Override.parse(text).key] = str(text)
    return specs


def _command_overrides(hydra: Any) -> list[str]:
    """The sweep command's own overrides (`model=a,b`), from Hydra's `multirun.yaml`."""
    for folder in _sweep_dirs(hydra):
        path = folder / "multirun.yaml"
        if path.is_file():
            try:
                record = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                return []
            return list(_get(_get(_get(record, "hydra"), "overrides"), "task") or [])
    return []


def _sweep_dirs(hydra: Any) -> list[Path]:
    """Where `multirun.yaml` may be: the sweep directory, else the job directory's parent."""
    sweep_dir = _get(_get(hydra, "sweep"), "dir")  # None when it cannot resolve here
    output_dir = _get(_get(hydra, "runtime"), "output_dir")
    folders = [Path(str(sweep_dir))] if sweep_dir else []
    if output_dir:
        folders.append(Path(str(output_dir)).parent)
    return folders


def _task_overrides(hydra: Any) -> list[str]:
    return [str(text) for text in (_get(_get(hydra, "overrides"), "task") or [])]


def _is_sweep(text: str) -> bool:
    """Whether an override's value is a sweep (`a,b`, `range(..)`, `choice(..)`, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(text).is_sweep_override()
    except Exception:  # noqa: BLE001 - a value Hydra cannot parse is nothing we can name by
        return False


def _short_value(value: str) -> str:
    """A long float to 4 significant digits; anything else as it was typed."""
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.{_SIGNIFICANT_DIGITS}g}"
    return short if len(short) < len(value) else value


def safe_run_name(name: str, max_length: int = MAX_RUN_NAME) -> str:
    """`name` as one folder name: no `/` or other unsafe characters, at most `max_length` long.

    A cut name ends in `_<hash of the whole name>`, so two long names stay distinct.
    """
    safe = _UNSAFE.sub("_", name)
    if len(safe) <= max_length:
        return safe
    digest = hashlib.sha1(name.encode()).hexdigest()[:_HASH_CHARS]
    return f"{safe[: max_length - _HASH_CHARS - 1]}_{digest}"


def _get(node: Any, key: str) -> Any:
    """`node[key]` of a dict or DictConfig, None when missing or unresolvable."""
    if not isinstance(node, Mapping):
        return None
    try:
        return node.get(key)
    except Exception:  # noqa: BLE001 - an interpolation that cannot resolve here
        return None


def _hydra_config() -> Any:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None
