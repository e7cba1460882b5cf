"""Evaluation of a trained classifier: metrics with patient-bootstrap intervals, operating
points chosen on validation, patient-level results, figures and a one-page report."""

from stroke.evaluation.evaluate import (
    EvaluationConfig,
    SplitPredictions,
    evaluate_predictions,
    predict_split,
)
from stroke.evaluation.report import write_evaluation

__all__ = [
    "EvaluationConfig",
    "SplitPredictions",
    "evaluate_predictions",
    "predict_split",
    "write_evaluation",
]
