"""The checkpoint format, in one place: what a stroke-train checkpoint holds, how it is read
safely, how an older one is upgraded on load, and how its trained network is taken out.

A checkpoint is Lightning's file with one more entry, `stroke` (`format.RECORD_KEY`): the
format version, the task, the classes, the preprocessing record and the run it comes from
(`format.CheckpointRecord`). Every command reads checkpoints through `read_checkpoint`,
which loads with `weights_only=True` and upgrades older files (`upgrade.upgrade`), so the
rest of the code sees one format.
"""

from stroke.checkpoint.extras import add_to_checkpoint
from stroke.checkpoint.format import (
    FORMAT_VERSION,
    RECORD_KEY,
    CheckpointRecord,
    checkpoint_record,
    checkpoint_task,
    datamodule_record,
)
from stroke.checkpoint.read import read_checkpoint
from stroke.checkpoint.run_config import checkpoint_preprocessing, run_config_of
from stroke.checkpoint.weights import (
    checkpoint_net_weights,
    load_trained_weights,
    trained_net_state,
)

__all__ = [
    "FORMAT_VERSION",
    "RECORD_KEY",
    "CheckpointRecord",
    "add_to_checkpoint",
    "checkpoint_net_weights",
    "checkpoint_preprocessing",
    "checkpoint_record",
    "checkpoint_task",
    "datamodule_record",
    "load_trained_weights",
    "read_checkpoint",
    "run_config_of",
    "trained_net_state",
]
