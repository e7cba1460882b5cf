"""What a stroke-train checkpoint holds, beside Lightning's own entries.

Lightning writes `state_dict` (the LightningModule's weights: the network under `net.`,
and with `weight_averaging=ema|swa` the averaged weights already swapped in, see
stroke/averaging.py), `hyper_parameters` (the module's constructor arguments, plain values,
from which the network is rebuilt), the optimizer and loop states (for resuming), and each
datamodule's `state_dict()` under its class name. stroke adds `stroke` (`RECORD_KEY`):

| key | what |
| --- | --- |
| format_version | `FORMAT_VERSION`; files without the key are version 0 (main before 2026-12-03) |
| task | the registered task that trained it (stroke/tasks/registry.py) |
| class_names | the image classes, in the network's output order |
| preprocessing | `Preprocessing.record()`: what the network was fed (size, channels, windows...) |
| data | the datamodule's other state (a segmenter's mask record) |
| averaged_weights | `ema`/`swa` when the weights are averaged ones, else null |
| provenance | the run directory, the stroke version, the time it was written |

Operating points (thresholds chosen on validation) are not in the file: they are chosen
after training, by the run's evaluation, and read from `<run>/evaluation/metrics.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from stroke.data.preprocessing import PREPROCESSING_FIELDS

#: the format written by this version; `upgrade.upgrade` brings older files to it
FORMAT_VERSION = 2
#: the checkpoint entry holding stroke's record
RECORD_KEY = "stroke"
#: the task of a version-0 checkpoint without one in its hyper-parameters
LEGACY_TASK = "classification"


@dataclass(frozen=True)
class CheckpointRecord:
    """stroke's record in a checkpoint (plain values, loadable with weights_only=True)."""

    task: str
    class_names: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    averaged_weights: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> CheckpointRecord:
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        return cls(**known)


#: datamodule-state keys kept out of the record's preprocessing and data: the classes have
#: their own field, and version 0 repeated a segmenter's task there
_NOT_DATA = frozenset({"class_names", "task"})


def split_datamodule_state(state: Mapping[str, Any] | None) -> tuple[dict, dict]:
    """A datamodule's `state_dict()` as the record's (preprocessing, data)."""
    state = dict(state or {})
    preprocessing = {k: v for k, v in state.items() if k in PREPROCESSING_FIELDS}
    data = {k: v for k, v in state.items() if k not in PREPROCESSING_FIELDS and k not in _NOT_DATA}
    return preprocessing, data


def checkpoint_record(checkpoint: dict) -> CheckpointRecord:
    """The record of a checkpoint read by `read_checkpoint` (upgraded, so always present)."""
    return CheckpointRecord.from_dict(checkpoint[RECORD_KEY])


def checkpoint_task(checkpoint: dict) -> str:
    """The name of the task that trained a checkpoint."""
    return checkpoint_record(checkpoint).task


def datamodule_record(checkpoint: dict) -> dict:
    """The datamodule's state (preprocessing record and the task's data record), or {}."""
    record = checkpoint_record(checkpoint)
    if not record.preprocessing:
        return dict(record.data)
    return {**record.preprocessing, **record.data, "class_names": record.class_names}
