"""Multi-label classification: independent findings per image (sigmoid outputs), e.g. the
five hemorrhage subtypes of the RSNA challenge and their `any`.

Parts: `datamodule` (label sets as 0/1 targets, the derived `any`), `module`
(MultiLabelClassifier: BCE with optional pos_weight), `metrics` (per label, macro, micro,
the weighted log loss), `report` (slice and series level, stroke-eval's), `checkpoint`,
`evaluate`, `predict` (a row per slice and per series), `decision` (a threshold per
label), `serve` (stroke-serve's model: per-label bars, slice and series).
"""

from stroke.inference.onnx_export import OUTPUT_NAME
from stroke.tasks.multilabel.checkpoint import LoadedMultiLabel, load_multilabel
from stroke.tasks.multilabel.datamodule import MultiLabelDataModule, multilabel_targets
from stroke.tasks.multilabel.evaluate import evaluate_multilabel
from stroke.tasks.multilabel.module import MultiLabelClassifier
from stroke.tasks.multilabel.predict import run_multilabel_prediction
from stroke.tasks.multilabel.serve import ServedMultiLabel
from stroke.tasks.registry import TaskParts

TASK = TaskParts(
    name=MultiLabelClassifier.task,
    summary="independent findings per image (sigmoid per label)",
    module=MultiLabelClassifier,
    load=load_multilabel,
    evaluate=evaluate_multilabel,
    predict=run_multilabel_prediction,
    onnx_outputs=lambda model: [OUTPUT_NAME],
    serve=ServedMultiLabel.load,
    serve_key="ckpt_path",
    ensembles=True,
)

__all__ = [
    "TASK",
    "LoadedMultiLabel",
    "MultiLabelClassifier",
    "MultiLabelDataModule",
    "ServedMultiLabel",
    "load_multilabel",
    "multilabel_targets",
]
