"""The datamodule's settings in groups: what each `data.*` key is for, declared once.

A data config stays one flat namespace of keys (`data.batch_size=16`, `data.fold=2`: what
users type), and `DataSettings.from_keys` sorts them into typed groups, each checked when it
is built, before anything is read:

| group         | keys                                                                  |
|---------------|-----------------------------------------------------------------------|
| preprocessing | the fields of `Preprocessing` a config sets (`PREPROCESSING_KEYS`)    |
| samples       | `class_map`, `classes`, `slice_regex`                                 |
| splits        | `val_fraction`, `test_fraction`, `seed`, `folds`, `fold`,             |
|               | `fold_split`, `resplit`                                               |
| leakage       | `leakage`                                                             |
| cache         | `cache`, `cache_dir`                                                  |
| loading       | `batch_size`, `num_workers`, `pin_memory`, `sampler`                  |

A key in no group is a one-line error naming it and the keys there are. Defaults live in
`conf/data/_base.yaml`; the dataclass defaults here are those of a datamodule built in code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from stroke.data.folds import FOLD_SPLITS
from stroke.data.leakage import resolve_leakage_mode
from stroke.data.preprocessing import PREPROCESSING_FIELDS, Preprocessing
from stroke.errors import ConfigError
from stroke.parameters import FRACTION, WORKERS, Boolean, Choice, Integer, check

#: preprocessing fields a source gives rather than the config (its HU windows)
SOURCE_PREPROCESSING_FIELDS = ("dicom_windows",)
#: the `data.*` keys of the preprocessing group: the record's fields a config sets
PREPROCESSING_KEYS = tuple(f for f in PREPROCESSING_FIELDS if f not in SOURCE_PREPROCESSING_FIELDS)
#: `data.sampler`: None shuffles; `weighted` balances classes (beside model.class_weighting).
SAMPLERS = (None, "weighted")
#: keys a data config holds for its source's sake (interpolated into `data.source`)
SOURCE_KEYS = ("root",)


def check_group(settings: Any) -> None:
    """A settings group's values against its declared CONSTRAINTS (stroke.parameters)."""
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    check(values, type(settings).CONSTRAINTS, prefix="data.")


@dataclass(frozen=True)
class SampleSettings:
    """Which classes the samples are in (`class_map`, `classes`) and their slice order."""

    class_map: Mapping[str, str | None] | None = None
    classes: Sequence[str] | None = None
    #: the slice number in file names (first group), for 2.5D context of folder/CSV sources
    slice_regex: str | None = None

    def __post_init__(self) -> None:
        if self.class_map is not None and not isinstance(self.class_map, Mapping):
            raise ConfigError(
                f"data.class_map must be a mapping {{folder class: class or null}}, "
                f"got {self.class_map!r}"
            )
        if self.classes is not None and (
            isinstance(self.classes, str) or not isinstance(self.classes, Sequence)
        ):
            raise ConfigError(f"data.classes must be a list of class names, got {self.classes!r}")
        object.__setattr__(self, "class_map", dict(self.class_map) if self.class_map else None)
        if self.classes is not None:
            object.__setattr__(self, "classes", [str(c) for c in self.classes])


@dataclass(frozen=True)
class SplitSettings:
    """How samples are split by patient: fractions, or fold `fold` of `folds`."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    folds: int = 5
    #: cross-validation: fold `fold` of `folds` is held out (stroke.data.folds); None: off
    fold: int | None = None
    fold_split: str = "test"
    #: pool a pre-split set (split folders or column) and split it again by patient
    resplit: bool = False

    #: folds and fold are checked together, by stroke.data.folds
    CONSTRAINTS: ClassVar[dict[str, Any]] = {
        "val_fraction": FRACTION,
        "test_fraction": FRACTION,
        "seed": Integer(),
        "fold_split": Choice(FOLD_SPLITS),
    }

    def __post_init__(self) -> None:
        check_group(self)
        object.__setattr__(self, "resplit", bool(self.resplit))


@dataclass(frozen=True)
class LeakageSettings:
    """What to do with near-duplicate images across splits: warn, error, drop or off."""

    leakage: str | bool = "warn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "leakage", resolve_leakage_mode(self.leakage))


@dataclass(frozen=True)
class CacheSettings:
    """The decoded-image cache: on or off, and where (default: the user's cache home)."""

    cache: bool = True
    cache_dir: str | Path | None = None

    CONSTRAINTS: ClassVar[dict[str, Any]] = {"cache": Boolean()}

    def __post_init__(self) -> None:
        check_group(self)


@dataclass(frozen=True)
class LoadingSettings:
    """How batches are drawn and loaded: size, worker processes, pinning, class balance."""

    batch_size: int = 32
    num_workers: int | str = "auto"
    pin_memory: bool | None = None
    sampler: str | None = None

    CONSTRAINTS: ClassVar[dict[str, Any]] = {
        "batch_size": Integer(1),
        "num_workers": WORKERS,
        "pin_memory": Boolean(also=(None,)),
        "sampler": Choice(SAMPLERS),
    }

    def __post_init__(self) -> None:
        check_group(self)


#: group name -> its settings class; the preprocessing group is `Preprocessing`'s own keys
GROUPS: dict[str, type] = {
    "samples": SampleSettings,
    "splits": SplitSettings,
    "leakage": LeakageSettings,
    "cache": CacheSettings,
    "loading": LoadingSettings,
}


def _keys_of(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


#: every `data.*` key a datamodule takes, besides `source`, `masks` and the transforms
DATA_KEYS = (
    PREPROCESSING_KEYS + tuple(k for cls in GROUPS.values() for k in _keys_of(cls)) + SOURCE_KEYS
)


#: every declared constraint of a `data.*` key: what stroke-train checks before reading data
DATA_CONSTRAINTS: dict[str, Any] = {
    **Preprocessing.CONSTRAINTS,
    **{k: c for group in GROUPS.values() for k, c in getattr(group, "CONSTRAINTS", {}).items()},
}


@dataclass(frozen=True)
class DataSettings:
    """All of a datamodule's settings, in their groups."""

    #: the preprocessing keys as given (`Preprocessing` is built once the source's windows
    #: are known; `mean`/`std` may say `dataset`, measured at setup)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    samples: SampleSettings = field(default_factory=SampleSettings)
    splits: SplitSettings = field(default_factory=SplitSettings)
    leakage: LeakageSettings = field(default_factory=LeakageSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    loading: LoadingSettings = field(default_factory=LoadingSettings)

    @classmethod
    def from_keys(cls, keys: Mapping[str, Any]) -> DataSettings:
        """The groups from flat `data.*` keys; an unknown key is a one-line ConfigError."""
        for key in keys:
            if key not in DATA_KEYS:
                close = difflib.get_close_matches(str(key), DATA_KEYS, n=1)
                hint = f"did you mean data.{close[0]}? " if close else ""
                raise ConfigError(
                    f"data.{key} is not a data setting: {hint}the keys are {', '.join(DATA_KEYS)}"
                )
        groups = {
            name: group(**{k: keys[k] for k in _keys_of(group) if k in keys})
            for name, group in GROUPS.items()
        }
        preprocessing = {k: keys[k] for k in PREPROCESSING_KEYS if k in keys}
        return cls(preprocessing=preprocessing, **groups)
