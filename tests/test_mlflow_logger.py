"""`logger=mlflow`: a run's parameters and metrics in a local MLflow store, read back."""

from __future__ import annotations

import pytest
from conftest import TINY, compose_train


@pytest.mark.slow
def test_a_run_logged_to_mlflow_can_be_read_back(phantom_dir, tmp_path):
    from mlflow import MlflowClient

    from stroke.cli.train import train
    from stroke.runs.naming import current_run_name

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        *TINY,
        f"data.root={phantom_dir}",
        "model=cnn_small",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={store}",
        f"logger.mlflow.artifact_location={tmp_path / 'mlruns'}",
    ]
    cfg = compose_train(overrides, tmp_path / "run")
    metrics = train(cfg)

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(cfg.task_name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == current_run_name()  # the name TensorBoard lists it by
    assert run.info.status == "FINISHED"
    assert run.data.params["model/backbone/name"] == "cnn_small"
    assert run.data.params["choice/model"] == "cnn_small"
    assert float(run.data.params["data/image_size"]) == 32
    test_metric = next(name for name in metrics if name.startswith("test/"))
    assert run.data.metrics[test_metric] == pytest.approx(metrics[test_metric])
