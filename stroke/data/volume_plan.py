"""A volume plan: how the 3-D tasks read, cut and learn from scans, as a YAML a user can edit.

A plan holds the target spacing (mm, x y z in RAS), the training patch (voxels), the batch,
the network's strides and kernel sizes per level (nnU-Net's rules, so a `DynUNet` takes them
as they are), its widths, and the intensity scheme:

- `{scheme: ct, clip: [low, high], mean: m, std: s}`: nnU-Net's CT normalisation, clip to
  the training foreground's 0.5-99.5 percentiles, then z-score with its mean and std;
- `{scheme: window, level: L, width: W}`: a fixed HU window to 0..1;
- `{scheme: zscore}`: each scan's own non-zero voxels z-scored (MRI, whose units are not
  absolute).

`stroke.data.volume_planner.plan_volumes` writes one from a fingerprint; `read_plan` and
`plan_from_mapping` check one (every error names the key and what was expected);
`VolumePlan.override` replaces keys (`data.plan_overrides`). The checkpoint keeps the plan,
so prediction reads a scan exactly as training did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from stroke.errors import ConfigError
from stroke.io import atomic_write_text

#: intensity schemes and the keys each needs
INTENSITY_SCHEMES = {"ct": ("clip", "mean", "std"), "window": ("level", "width"), "zscore": ()}

#: the header of a written plan: where it came from and how to use it
_HEADER = """\
# A stroke volume plan (nnU-Net's rules; stroke/data/volume_plan.py explains every key).
# Train with it: stroke-train experiment=lesion_segmentation_3d data.plan=<this file>
# Edit any key; strides and kernel_sizes have one [x, y, z] entry per network level, the
# first stride [1, 1, 1]; each side of patch_size must divide by the product of its strides.
"""


def check_intensity(value: Any, key: str = "intensity") -> dict[str, Any]:
    """An intensity scheme as plain values, or an error naming `key` and what is allowed."""
    if not isinstance(value, Mapping) or value.get("scheme") not in INTENSITY_SCHEMES:
        raise ConfigError(
            f"{key}={value!r} is not an intensity scheme; expected {{scheme: ct, clip: "
            "[low, high], mean: m, std: s}, {scheme: window, level: L, width: W} or "
            "{scheme: zscore}"
        )
    scheme = value["scheme"]
    missing = [k for k in INTENSITY_SCHEMES[scheme] if value.get(k) is None]
    if missing:
        raise ConfigError(f"{key} (scheme {scheme}) lacks {', '.join(missing)}")
    out: dict[str, Any] = {"scheme": scheme}
    try:
        if scheme == "ct":
            low, high = (float(v) for v in value["clip"])
            out.update(clip=[low, high], mean=float(value["mean"]), std=float(value["std"]))
            if not (low < high and out["std"] > 0):
                raise ValueError
        elif scheme == "window":
            out.update(level=float(value["level"]), width=float(value["width"]))
            if not out["width"] > 0:
                raise ValueError
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{key}={dict(value)!r}: clip must be [low, high] with low < high, std and width > 0"
        ) from err
    return out


def _triple(value: Any, key: str, kind: type, minimum: float) -> list:
    """An [x, y, z] of numbers >= minimum (a single number is used for every axis)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        items = [kind(v) for v in value]
        ok = len(items) == 3 and all(v >= minimum for v in items)
        if kind is int:
            ok = ok and all(float(v) == float(w) for v, w in zip(items, value, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected [x, y, z] of {kind.__name__}s >= {minimum}")
    return items


@dataclass(frozen=True)
class VolumePlan:
    """How the 3-D tasks read and cut scans (see the module docstring for every key)."""

    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    channels: list[int]
    intensity: dict[str, Any]
    #: the training scans' median shape at the target spacing (voxels; informative)
    median_shape: list[int] = field(default_factory=list)
    #: the label values 1..K seen in the training scans' label volumes (informative)
    lesion_classes: list[int] = field(default_factory=list)
    #: the memory the batch was sized for (MB; informative)
    memory_budget_mb: float | None = None

    def __post_init__(self) -> None:
        self.validate("plan.")

    def validate(self, where: str) -> None:
        """Every key's type and range, and that strides, kernels and patch fit together;
        errors start with `where` (`data.plan_overrides.`, `<file>: `)."""
        object.__setattr__(self, "spacing", _triple(self.spacing, f"{where}spacing", float, 1e-3))
        patch = _triple(self.patch_size, f"{where}patch_size", int, 1)
        object.__setattr__(self, "patch_size", patch)
        if (
            not isinstance(self.batch_size, int)
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ConfigError(f"{where}batch_size={self.batch_size!r}: expected an integer >= 1")
        if not isinstance(self.strides, Sequence) or not self.strides:
            raise ConfigError(f"{where}strides={self.strides!r}: expected a list of [x, y, z]")
        strides = [_triple(s, f"{where}strides[{i}]", int, 1) for i, s in enumerate(self.strides)]
        kernels = [
            _triple(k, f"{where}kernel_sizes[{i}]", int, 1)
            for i, k in enumerate(self.kernel_sizes or [])
        ]
        if len(kernels) != len(strides):
            raise ConfigError(
                f"{where}kernel_sizes has {len(kernels)} levels, strides {len(strides)}; "
                "give one [x, y, z] of each per network level"
            )
        if strides[0] != [1, 1, 1]:
            raise ConfigError(
                f"{where}strides[0]={strides[0]}: the first level keeps the patch's size, [1, 1, 1]"
            )
        for axis in range(3):
            factor = math.prod(s[axis] for s in strides)
            if patch[axis] % factor:
                raise ConfigError(
                    f"{where}patch_size={patch}: side {axis} ({patch[axis]}) must be a multiple "
                    f"of {factor}, the product of the strides along it"
                )
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "kernel_sizes", kernels)
        try:
            channels = [int(c) for c in self.channels]
        except (TypeError, ValueError):
            channels = []
        if len(channels) < len(strides) or any(c < 1 for c in channels):
            raise ConfigError(
                f"{where}channels={self.channels!r}: expected one width >= 1 per level "
                f"({len(strides)})"
            )
        object.__setattr__(self, "channels", channels[: len(strides)])
        object.__setattr__(self, "intensity", check_intensity(self.intensity, f"{where}intensity"))

    def override(self, **values: Any) -> VolumePlan:
        """A copy with keys replaced (`data.plan_overrides`); an unknown key is an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"data.plan_overrides.{unknown[0]} is not a plan key; allowed: {sorted(known)}"
            )
        changed = dict(values)
        # a new depth without new kernels: 3 x 3 x 3 at every level
        new_depth = "strides" in changed and len(changed["strides"]) != len(self.strides)
        if new_depth and "kernel_sizes" not in changed:
            changed["kernel_sizes"] = [[3, 3, 3]] * len(changed["strides"])
        if "strides" in changed and "channels" not in changed:
            depth = len(changed["strides"])
            widths = list(self.channels)
            while len(widths) < depth:
                widths.append(min(widths[-1] * 2, 320))
            changed["channels"] = widths[:depth]
        return plan_from_mapping({**self.as_dict(), **changed}, "data.plan_overrides.")

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for the checkpoint, the YAML, the transforms)."""
        return asdict(self)


def plan_from_mapping(values: Mapping[str, Any], source: str) -> VolumePlan:
    """A plan from plain values (a YAML's, a checkpoint's); errors start with `source`
    (`<file>: `, `data.plan_overrides.`) and name the key."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source.rstrip(': .')} is not a mapping of plan keys")
    known = {f.name: f for f in fields(VolumePlan)}
    required = [
        n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(
            f"{source.rstrip(': .')} lacks plan key(s) {missing}; required: {required}"
        )
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}{unknown[0]} is not a plan key; allowed: {sorted(known)}")
    plan = VolumePlan.__new__(VolumePlan)
    for name in known:
        spec = known[name]
        if name in values:
            value = values[name]
        elif spec.default_factory is not MISSING:
            value = spec.default_factory()
        else:
            value = spec.default
        object.__setattr__(plan, name, value)
    plan.validate(source)
    return plan


def write_plan(plan: VolumePlan, path: Path) -> Path:
    """The plan as a commented YAML (written whole, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _HEADER + yaml.safe_dump(plan.as_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)


def read_plan(path: Path) -> VolumePlan:
    """A plan YAML (stroke-plan's, or a run's plan.yaml); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"data.plan={str(path)!r} is not a file; expected 'auto' or a plan YAML written by "
            "stroke-plan (or a run's plan.yaml)"
        )
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"data.plan={str(path)!r} is not valid YAML: {str(err).splitlines()[0]}"
        ) from err
    return plan_from_mapping(values, f"{path}: ")
