"""TensorBoard's HPARAMS view of a run, written by hand: swept keys first, metrics as logged.

Lightning's `log_hyperparams(params, metrics)` lists every hyper-parameter in name order, so
the view opens on keys that never vary, and it logs each final metric again as a scalar,
which clutters the time series. Here the experiment record is our own:

- TensorBoard 2.21 shows the first 5 hyper-parameters after sorting them by `differs` (true
  first), then by name (`backend_context._sort_and_reduce_to_hparams_limit` and the HPARAMS
  dashboard's `_computeHParams`). The swept keys are marked `differs`, so they come first and
  are ticked; in a sweep the keys that cannot vary with them are left out.
- A metric column names a scalar tag the run already logs (`test/f1`, `val/f1_best`): the
  table reads its last value, so no `hp/...` copy is written. The first 5 are ticked: the
  optimized metric and the monitored one (its best, then its last value) come first, then
  the test, validation and training ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

#: Metrics of these stages come first in the table, in this order (after the headline ones).
STAGE_ORDER = ("test", "val", "train")


def write_hparams(
    writer: Any,
    params: Mapping[str, Any],
    columns: Sequence[tuple[str, bool]],
    metrics: Sequence[str],
) -> None:
    """Write the run's HPARAMS record to a torch `SummaryWriter` (a TensorBoardLogger's).

    `params`: every hyper-parameter's value; `columns`: the table's (name, differs) in order;
    `metrics`: scalar tags the run logged, the first ones ticked.
    """
    file_writer = writer._get_file_writer()  # the writer Lightning's own hparams go through
    file_writer.add_summary(experiment_summary(params, columns, metrics))
    file_writer.add_summary(session_start_summary(params))
    file_writer.add_summary(session_end_summary())
    writer.flush()


def experiment_summary(
    params: Mapping[str, Any], columns: Sequence[tuple[str, bool]], metrics: Sequence[str]
):
    """The experiment record: which hyper-parameter and metric columns the table has."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=name, type=_data_type(params[name]), differs=differs)
            for name, differs in columns
        ],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
        time_created_secs=time.time(),
    )
    return _summary("experiment", plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_start_summary(params: Mapping[str, Any]):
    """This run's hyper-parameter values; a group of its own, so no two runs share a row."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in params.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
    return _summary("session_start_info", data)


def session_end_summary():
    """The run ended well (a failed run never gets here)."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return _summary("session_end_info", plugin_data_pb2.HParamsPluginData(session_end_info=end))


def _summary(kind: str, data: Any):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    summary = summary_pb2.Summary()
    summary.value.add(
        tag=f"_hparams_/{kind}",
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def _data_type(value: Any) -> int:
    from tensorboard.plugins.hparams import api_pb2

    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, int | float):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def hparam_columns(
    params: Mapping[str, Any], swept: Sequence[str], keep_rest: bool
) -> list[tuple[str, bool]]:
    """The table's hyper-parameter columns as (name, differs): the swept ones first.

    `keep_rest=False` (a sweep) keeps of the others only those that may vary with a swept
    key: `model/...` when the `model` group is swept. A single run keeps them all, for the
    runs it will be compared with.
    """
    swept = [name for name in dict.fromkeys(swept) if name in params]
    roots = [name.removeprefix("choice/") for name in swept]
    rest = [
        name
        for name in params
        if name not in swept and (keep_rest or any(name.startswith(f"{root}/") for root in roots))
    ]
    return [(name, True) for name in swept] + [(name, False) for name in rest]


def metric_columns(metrics: Sequence[str], headline: Sequence[str] = ()) -> list[str]:
    """Metric tags in table order: `headline` (e.g. the optimized metric), then by stage,
    overall before per-class (fewer `/` first), then by name."""
    first = [name for name in dict.fromkeys(headline) if name in metrics]
    others = [name for name in metrics if name not in first]
    return first + sorted(others, key=_metric_rank)


def _metric_rank(name: str) -> tuple[int, int, str]:
    stage = name.split("/", 1)[0]
    order = STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
    return order, name.count("/"), name


def image_epoch_loggers(trainer, every_n_epochs: int, num_images: int) -> list:
    """The TensorBoard loggers an image callback draws to at this validation epoch's end;
    none in the sanity check, off rank zero, between its epochs, or with nothing to show."""
    if trainer.sanity_checking or not trainer.is_global_zero or num_images < 1:
        return []
    if trainer.current_epoch % every_n_epochs:
        return []
    from lightning.pytorch.loggers import TensorBoardLogger

    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def log_figure(loggers, tag: str, figure, step: int) -> None:
    """A matplotlib figure to each TensorBoard logger at `step`, then closed (no leak)."""
    import matplotlib.pyplot as plt

    for logger in loggers:
        logger.experiment.add_figure(tag, figure, global_step=step)
    plt.close(figure)
