"""The parts of task `multilabel_series` (stage 2 over the fold models, one checkpoint)."""

from stroke.errors import ConfigError
from stroke.tasks.multilabel.sequence import SeriesSequenceModel
from stroke.tasks.multilabel.series import load_series
from stroke.tasks.multilabel.series_eval import evaluate_series, run_series_prediction
from stroke.tasks.registry import TaskParts


def _not_exported(model):
    raise ConfigError(
        f"{model.path} is a series model (fold models and a GRU over their features): "
        "stroke-export writes single networks; predict it with stroke-predict"
    )


def _serve(path, **options):
    raise ConfigError(
        f"ckpt_path={str(path)!r} is a series model; stroke-serve shows single-label "
        "classifiers and segmenters today: predict it with stroke-predict"
    )


TASK = TaskParts(
    name=SeriesSequenceModel.task,
    summary="a series read in slice order: every slice's and the series' findings",
    module=SeriesSequenceModel,
    load=load_series,
    evaluate=evaluate_series,
    predict=run_series_prediction,
    onnx_outputs=_not_exported,
    serve=_serve,
    serve_key="ckpt_path",
)
