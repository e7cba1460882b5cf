"""stroke-serve on a multi-label model (haemorrhage subtypes): per-label probabilities of each
slice and of the series, equal to stroke-predict's rows, and the thresholds on the card."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, one_series, train_subtypes
from fastapi.testclient import TestClient

from stroke.cli.predict import run_prediction
from stroke.cli.serve import served
from stroke.errors import ConfigError
from stroke.serve import ServeSettings, create_app
from stroke.tasks.multilabel import ServedMultiLabel

pytestmark = pytest.mark.slow

LABELS = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]


def predict_rows(ckpt: str, paths: list[Path], out: Path, *overrides: str) -> list[dict]:
    inputs = "[" + ",".join(str(p) for p in paths) + "]"
    cfg = compose_config(
        "predict",
        [f"ckpt_path={ckpt}", f"inputs={inputs}", f"output_csv={out}", "num_workers=0",
         *overrides],
    )  # fmt: skip
    run_prediction(cfg)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert not [r["error"] for r in rows if r["error"]]
    return rows


def serve_answer(model, paths: list[Path], tmp_path: Path, aggregation: str = "max") -> dict:
    (tmp_path / "uploads").mkdir(exist_ok=True)
    app = create_app(model, ServeSettings(tmp_dir=str(tmp_path / "uploads")), None, aggregation)
    with TestClient(app, raise_server_exceptions=False) as client:
        files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        response = client.post("/api/predict?views=true&overlay=true", files=files)
        card = client.get("/api/model").json()
    assert response.status_code == 200, response.text
    return {**response.json(), "card": card}


def assert_equal_rows(body: dict, rows: list[dict]) -> None:
    """The API's slice results and series row are stroke-predict's rows (its CSV: 6 decimals)."""
    by_name = {Path(r["path"]).name: r for r in rows if r["level"] == "slice"}
    assert len(body["results"]) == len(by_name)
    for result in body["results"]:
        row = by_name[result["name"]]
        assert result["error"] is None and set(result["probabilities"]) == set(LABELS)
        for label in LABELS:
            assert result["probabilities"][label] == pytest.approx(
                float(row[f"prob_{label}"]), abs=1e-5
            )
        assert result["predicted_class"] == row["labels"]
        assert result["labels"] == [c for c in LABELS if c in row["labels"].split("|")]
        assert "gradcam" not in result["images"] and "model" in result["images"]
    (series_row,) = [r for r in rows if r["level"] == "series"]
    (summary,) = body["series"]
    assert summary["n_images"] == int(series_row["slices"]) == len(by_name)
    for label in LABELS:
        assert summary["probabilities"][label] == pytest.approx(
            float(series_row[f"prob_{label}"]), abs=1e-5
        )
    assert summary["predicted_class"] == series_row["labels"]
    assert [r["series"] for r in body["results"]] == [1] * len(by_name)


def test_slices_and_series_equal_stroke_predicts_at_the_run_s_thresholds(
    subtype_run, subtype_phantom, tmp_path
):
    run = Path(shutil.copytree(subtype_run, tmp_path / "run"))
    report = run / "eval" / "metrics.json"
    chosen = {label: round(0.2 + 0.1 * i, 2) for i, label in enumerate(LABELS)}
    written = json.loads(report.read_text())
    written["thresholds"] = {k: {"threshold": t, "method": "test"} for k, t in chosen.items()}
    report.write_text(json.dumps(written))
    ckpt = run / "checkpoints" / "last.ckpt"
    paths = one_series(subtype_phantom)

    rows = predict_rows(str(ckpt), paths, tmp_path / "predictions.csv")
    model = served(str(ckpt), "ckpt_path")
    assert isinstance(model, ServedMultiLabel) and not model.can_explain
    body = serve_answer(model, paths, tmp_path)
    assert_equal_rows(body, rows)
    assert body["results"][0]["thresholds"] == chosen
    assert body["series"][0]["thresholds"] == chosen

    card = body["card"]
    assert card["classes"] == LABELS and "multi-label" in card["name"]
    assert card["decision"]["rule"] == "thresholds"
    assert card["decision"]["thresholds"] == chosen
    assert "validation" in card["decision"]["source"]
    assert "eval/metrics.json" in card["decision"]["source"]

    # a series by the mean of its slices, at the same thresholds
    mean = serve_answer(model, paths, tmp_path, aggregation="mean")["series"][0]
    slices = np.array([[r["probabilities"][c] for c in LABELS] for r in body["results"]])
    assert [mean["probabilities"][c] for c in LABELS] == pytest.approx(slices.mean(axis=0))
    means = dict(zip(LABELS, slices.mean(axis=0), strict=True))
    assert mean["labels"] == [c for c in LABELS if means[c] >= chosen[c]]


def test_an_ensemble_is_averaged_as_stroke_predict_averages_it(
    subtype_run, subtype_phantom, tmp_path
):
    other = train_subtypes(subtype_phantom, tmp_path / "other", "seed=7")
    members = f"[{subtype_run / 'checkpoints' / 'last.ckpt'},{other / 'checkpoints' / 'last.ckpt'}]"
    paths = one_series(subtype_phantom)[:6]
    rows = predict_rows(members, paths, tmp_path / "predictions.csv")
    model = served(compose_config("serve", [f"ckpt_path={members}"]).ckpt_path, "ckpt_path")
    body = serve_answer(model, paths, tmp_path)
    assert_equal_rows(body, rows)
    card = body["card"]
    assert card["ensemble"] == [str(Path(p)) for p in members.strip("[]").split(",")]
    assert card["decision"]["thresholds"] == dict.fromkeys(LABELS, 0.5)
    assert "ensemble" in card["decision"]["source"]

    # threshold= decides every label, in the server as in stroke-predict
    rows = predict_rows(members, paths, tmp_path / "at_0.3.csv", "threshold=0.3")
    cfg = compose_config("serve", [f"ckpt_path={members}", "threshold=0.3"])
    model = served(cfg.ckpt_path, "ckpt_path", threshold=cfg.threshold)
    assert model.card()["decision"]["thresholds"] == dict.fromkeys(LABELS, 0.3)
    assert_equal_rows(serve_answer(model, paths, tmp_path), rows)


def test_single_label_rules_are_refused_in_one_line(subtype_run):
    ckpt = subtype_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="threshold=argmax: a multi-label model decides each"):
        served(str(ckpt), "ckpt_path", threshold="argmax")
    with pytest.raises(ConfigError, match="threshold=1.5; expected a probability"):
        served(str(ckpt), "ckpt_path", threshold=1.5)
    with pytest.raises(ConfigError, match="tta=true"):
        served(str(ckpt), "ckpt_path", tta=True)


def test_a_context_model_stacks_each_slice_s_neighbours_as_stroke_predict_does(
    subtype_phantom, tmp_path
):
    """experiment=ich_subtypes reads each slice with its neighbours: the uploads of a series,
    in any order, are ordered along the slice normal and stacked as stroke-predict does."""
    run = train_subtypes(subtype_phantom, tmp_path / "context", "data.context_slices=1")
    ckpt = run / "checkpoints" / "last.ckpt"
    paths = one_series(subtype_phantom)
    rows = predict_rows(str(ckpt), paths, tmp_path / "predictions.csv")
    model = served(str(ckpt), "ckpt_path")
    assert model.context_slices == 1
    body = serve_answer(model, list(reversed(paths)), tmp_path)  # uploaded in reverse order
    assert_equal_rows(body, rows)
