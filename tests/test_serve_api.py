"""stroke-serve's API through FastAPI's test client: results, bad uploads, token, logs, cleanup."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATASETS, compose_config
from dicom_factory import CQ500, ct_dataset, head_slice_hu, save
from fastapi.testclient import TestClient
from PIL import Image

from stroke.cli.predict import run_prediction
from stroke.cli.serve import served
from stroke.errors import ConfigError
from stroke.evaluation.patient import aggregate_by_patient
from stroke.serve import LesionMask, ServedModel, ServeSettings, create_app
from stroke.serve.security import COOKIE
from stroke.serve.security import same_origin_path as same_origin
from stroke.serve.settings import TOKEN_ENV
from stroke.serve.worker import InferenceWorker, WorkerBusy
from stroke.tasks.classification.decision import decision_rule

CQ500_DIR = SHARED_DATASETS / CQ500 / "CQ500-CT-0"
TOKEN = "s3cret-token-for-tests"


def best_checkpoint(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "metrics.json").read_text())["best_model_path"])


@pytest.fixture(scope="module")
def dicom_model(dicom_run) -> ServedModel:
    """The binary DICOM-trained model, with its run's validation threshold."""
    return ServedModel.load(best_checkpoint(dicom_run))


@pytest.fixture
def upload_root(tmp_path) -> Path:
    root = tmp_path / "uploads"
    root.mkdir()
    return root


def client_for(model: ServedModel, upload_root: Path, **settings) -> TestClient:
    app = create_app(model, ServeSettings(tmp_dir=str(upload_root), **settings))
    return TestClient(app, raise_server_exceptions=False)


def post(client: TestClient, files: list[tuple[str, bytes]], query: str = "", **kwargs):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post(f"/api/predict{query}", files=parts, **kwargs)


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def dicom_bytes(tmp_path: Path, patient_id: str = "P1", **kwargs) -> bytes:
    rng = np.random.default_rng(0)
    path = save(ct_dataset(head_slice_hu(48, True, rng), patient_id=patient_id, **kwargs),
                tmp_path / f"{patient_id}_{kwargs.get('instance', 1)}.dcm")  # fmt: skip
    return path.read_bytes()


def predict_csv(ckpt: Path, paths: list[Path], out: Path) -> dict[str, dict[str, float]]:
    """stroke-predict's probabilities, by file name."""
    inputs = "[" + ",".join(str(p) for p in paths) + "]"
    cfg = compose_config(
        "predict",
        [f"ckpt_path={ckpt}", f"inputs={inputs}", f"output_csv={out}", "progress=false"],
    )
    run_prediction(cfg)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert not [r["error"] for r in rows if r["error"]]
    return {
        Path(r["path"]).name: {k[5:]: float(v) for k, v in r.items() if k.startswith("prob_")}
        for r in rows
    }


def assert_same_probabilities(api: dict, predicted: dict) -> None:
    assert set(api) == set(predicted)
    for name, probs in predicted.items():
        for cls, p in probs.items():
            # stroke-predict's CSV keeps 6 decimals
            assert api[name][cls] == pytest.approx(p, abs=1e-5), (name, cls)


def api_probabilities(client: TestClient, paths: list[Path]) -> dict:
    response = post(client, [(p.name, p.read_bytes()) for p in paths])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert not [r["error"] for r in results if r["error"]]
    return {r["name"]: r["probabilities"] for r in results}


# -- no train/serve skew ---------------------------------------------------------------------------
def test_png_and_jpeg_probabilities_equal_stroke_predicts(
    trained_run, phantom_dir, tmp_path, upload_root
):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    pngs = sorted(phantom_dir.glob("*/P*.png"))[:4]
    files = [shutil.copy(p, tmp_path / p.name) for p in pngs]
    rgb = np.asarray(Image.open(pngs[0]).convert("RGB").resize((61, 47)))
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(jpeg, quality=90)
    paths = [Path(f) for f in files] + [jpeg]
    predicted = predict_csv(ckpt, paths, tmp_path / "predictions.csv")
    with client_for(ServedModel.load(ckpt), upload_root) as client:
        assert_same_probabilities(api_probabilities(client, paths), predicted)
        # a model trained on image files has no HU window for DICOM, as in stroke-predict
        (refused,) = post(client, [("scan.dcm", dicom_bytes(tmp_path))]).json()["results"]
    assert "trained on image files" in refused["error"] and refused["probabilities"] is None


def test_dicom_probabilities_equal_stroke_predicts(dicom_run, dicom_model, tmp_path, upload_root):
    paths = sorted((dicom_run.parent / "dicom").rglob("*.dcm"))[:5]
    predicted = predict_csv(dicom_model.classifier.path, paths, tmp_path / "predictions.csv")
    with client_for(dicom_model, upload_root) as client:
        assert_same_probabilities(api_probabilities(client, paths), predicted)


@pytest.mark.skipif(not CQ500_DIR.is_dir(), reason=f"{CQ500_DIR} not present")
def test_compressed_cq500_probabilities_equal_stroke_predicts(dicom_model, tmp_path, upload_root):
    paths = sorted(CQ500_DIR.glob("*.dcm"))[:6]  # JPEG Lossless, 512 x 512
    predicted = predict_csv(dicom_model.classifier.path, paths, tmp_path / "predictions.csv")
    with client_for(dicom_model, upload_root) as client:
        response = post(client, [(p.name, p.read_bytes()) for p in paths], "?views=true")
        body = response.json()
    assert_same_probabilities({r["name"]: r["probabilities"] for r in body["results"]}, predicted)
    # one patient's study: one summary row, aggregated as stroke-eval does
    (row,) = body["series"]
    assert row["n_images"] == len(paths) and row["files"] == list(range(len(paths)))
    probs = np.array([[r["probabilities"][c] for c in body["classes"]] for r in body["results"]])
    expected = aggregate_by_patient(["p"] * len(paths), np.zeros(len(paths)), probs, "max").probs
    assert [row["probabilities"][c] for c in body["classes"]] == pytest.approx(expected[0])
    assert set(body["results"][0]["images"]) == {"model", "brain", "subdural", "stroke", "bone"}


# -- the decision ----------------------------------------------------------------------------------
def test_the_run_s_validation_threshold_decides(dicom_run, dicom_model, upload_root, tmp_path):
    report = json.loads((dicom_run / "eval" / "metrics.json").read_text())
    (point,) = [p for p in report["image_level"]["operating_points"] if "chosen_on_validation" in p]
    threshold = point["chosen_on_validation"]["threshold"]
    assert dicom_model.rule.threshold == threshold
    assert "validation" in dicom_model.rule.source
    with client_for(dicom_model, upload_root) as client:
        card = client.get("/api/model").json()
        body = post(client, [("a.dcm", dicom_bytes(tmp_path))]).json()
    assert card["decision"]["rule"] == "threshold" and card["decision"]["threshold"] == threshold
    assert card["classes"] == ["normal", "hemorrhage"] and card["reads_dicom"]
    assert card["checkpoint"]["sha256"] == body["checkpoint_sha256"]
    (result,) = body["results"]
    decided = "hemorrhage" if result["probabilities"]["hemorrhage"] >= threshold else "normal"
    assert result["predicted_class"] == decided and result["threshold"] == threshold


def test_argmax_unless_the_evaluation_scored_this_checkpoint(dicom_run, tmp_path):
    classes = ["normal", "hemorrhage"]
    last = dicom_run / "checkpoints" / "last.ckpt"
    rule = decision_rule(classes, last)
    assert rule.threshold is None and "not last.ckpt" in rule.source
    assert decision_rule(["a", "b", "c"], last).threshold is None  # multi-class: argmax
    assert decision_rule(classes, last, threshold="argmax").rule == "argmax"
    assert decision_rule(classes, last, threshold=0.3).threshold == 0.3
    orphan = tmp_path / "lone.ckpt"  # no run directory around it
    shutil.copy(last, orphan)
    assert "absent" in decision_rule(classes, orphan).source
    report = dicom_run / "eval" / "metrics.json"
    assert decision_rule(classes, orphan, eval_metrics=report).threshold is not None
    with pytest.raises(ConfigError, match="binary"):
        decision_rule(["a", "b", "c"], last, threshold=0.5)
    with pytest.raises(ConfigError, match="threshold='often'"):
        decision_rule(classes, last, threshold="often")


# -- bad uploads -----------------------------------------------------------------------------------
def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes whose header declares width x height 8-bit grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_each_bad_file_gets_its_error_and_the_others_their_results(
    dicom_model, upload_root, tmp_path
):
    good = png_bytes(np.full((40, 40), 90, np.uint8))
    files = [
        ("good.png", good),
        ("notes.png", b"just some text, not an image"),
        ("empty.png", b""),
        ("truncated.png", good[: len(good) // 2]),
        ("bomb.png", bomb_png(60_000, 60_000)),
        ("big.png", png_bytes(np.zeros((300, 300), np.uint8))),  # over max_pixels below
        ("huge.png", good + b"\x00" * 300_000),  # over max_file_mb below
        ("scan.png", dicom_bytes(tmp_path)),  # DICOM content named .png
        ("image.dcm", good),  # PNG content named .dcm
        ("../../../../tmp/escape.png", good),
        ("photo.jpeg", png_bytes(np.full((30, 50, 3), 120, np.uint8), "JPEG")),
    ]
    with client_for(dicom_model, upload_root, max_pixels=50_000, max_file_mb=0.25) as client:
        response = post(client, files)
    assert response.status_code == 200
    results = {r["name"]: r for r in response.json()["results"]}
    errors = {name: r["error"] for name, r in results.items()}
    assert errors["notes.png"].startswith("rejected: the content is not PNG, JPEG or DICOM")
    assert errors["empty.png"] == "rejected: the file is empty (0 bytes)"
    assert "cannot decode image the upload" in errors["truncated.png"]
    assert "bomb" in errors["bomb.png"] and "bomb" in errors["big.png"]
    assert "serve.max_file_mb" in errors["huge.png"]
    for name, kind in [("good.png", "png"), ("scan.png", "dicom"), ("image.dcm", "png"),
                       ("escape.png", "png"), ("photo.jpeg", "jpeg")]:  # fmt: skip
        assert errors[name] is None and results[name]["type"] == kind, name
        assert sum(results[name]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    # the client's name is shown (without its folders) and never used as a path
    assert not Path("/tmp/escape.png").exists()
    assert list(upload_root.iterdir()) == []
    assert not any("/" in e or "upload_0" in e for e in errors.values() if e)


def test_request_caps_answer_413(dicom_model, upload_root):
    small = png_bytes(np.zeros((8, 8), np.uint8))
    with client_for(dicom_model, upload_root, max_files=3, max_request_mb=0.05) as client:
        too_many = post(client, [(f"{i}.png", small) for i in range(4)])
        assert too_many.status_code == 413 and "serve.max_files" in too_many.json()["detail"]
        too_big = post(client, [("a.png", small + b"\x00" * 60_000)])
        assert too_big.status_code == 413 and "max_request_mb" in too_big.json()["detail"]

        def chunked_body():  # no Content-Length: counted as it arrives
            yield b"--xyz\r\nContent-Disposition: form-data; name=files; filename=a.png\r\n\r\n"
            for _ in range(20):
                yield b"\x00" * 10_000

        streamed = client.post(
            "/api/predict",
            content=chunked_body(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert streamed.status_code == 413
    assert list(upload_root.iterdir()) == []


def test_uploads_are_removed_even_when_inference_fails(dicom_model, upload_root, monkeypatch):
    good = png_bytes(np.full((40, 40), 90, np.uint8))
    with client_for(dicom_model, upload_root) as client:
        assert post(client, [("a.png", good)]).status_code == 200
        assert list(upload_root.iterdir()) == []

        def broken(batch):
            raise RuntimeError("the model fell over")

        monkeypatch.setattr(dicom_model, "probabilities", broken)
        failed = post(client, [("a.png", good), ("b.png", good)])
        assert failed.status_code == 500
        assert failed.json() == {
            "detail": "internal error",
            "request_id": failed.headers["x-request-id"],
        }
        assert list(upload_root.iterdir()) == []
        monkeypatch.undo()
        assert post(client, [("a.png", good)]).status_code == 200  # the worker lives on


# -- who may use it --------------------------------------------------------------------------------
def test_a_token_guards_every_page_and_api_call(dicom_model, upload_root):
    good = png_bytes(np.full((40, 40), 90, np.uint8))
    with client_for(dicom_model, upload_root) as client:  # no token: open
        assert client.get("/api/model").status_code == 200
        schema = client.get("/openapi.json").json()  # FastAPI's own documentation of the API
        assert {"/api/predict", "/api/model", "/healthz"} <= set(schema["paths"])
    with client_for(dicom_model, upload_root, token=TOKEN) as client:
        for path in ("/", "/static/app.js", "/api/model", "/healthz", "/openapi.json", "/docs"):
            response = client.get(path)
            assert response.status_code == 401, path
        assert "Access token needed" in client.get("/").text
        assert post(client, [("a.png", good)]).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.get("/api/model", headers=wrong).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/model", headers=bearer).status_code == 200
        assert post(client, [("a.png", good)], headers=bearer).status_code == 200
        # the page opened once with ?token= keeps it in an HttpOnly cookie, off the URL
        opened = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        assert "HttpOnly" in opened.headers["set-cookie"]
        assert "SameSite=Strict" in opened.headers["set-cookie"]
        assert client.cookies.get(COOKIE) == TOKEN
        assert client.get("/").status_code == 200
        assert client.get("/api/model").status_code == 200
    # the redirect after `?token=` stays on this server, whatever the path
    assert same_origin("//evil.example/x") == "/evil.example/x" == same_origin("/\\evil.example/x")


def test_token_from_the_environment_and_its_checks(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert ServeSettings().token == TOKEN
    assert ServeSettings(token="another-token-1").token == "another-token-1"
    drawn = ServeSettings(token="auto")
    assert drawn.token_drawn and len(drawn.token) >= 24
    monkeypatch.delenv(TOKEN_ENV)
    assert ServeSettings().token is None
    with pytest.raises(ConfigError, match="serve.token"):
        ServeSettings(token="short")
    with pytest.raises(ConfigError, match="serve.max_files"):
        ServeSettings(max_files=0)
    with pytest.raises(ConfigError, match="cors_origins"):
        ServeSettings(token=TOKEN, cors_origins=["*"])


def test_cors_is_off_unless_origins_are_configured(dicom_model, upload_root):
    preflight = {"Origin": "https://pacs.example.org", "Access-Control-Request-Method": "POST"}
    with client_for(dicom_model, upload_root) as client:
        response = client.options("/api/predict", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with client_for(dicom_model, upload_root, cors_origins=["https://pacs.example.org"]) as client:
        response = client.options("/api/predict", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://pacs.example.org"


def test_logs_name_requests_and_hashes_never_names_or_patients(
    dicom_model, upload_root, tmp_path, caplog
):
    data = dicom_bytes(tmp_path, patient_id="DOE^JANE")
    with client_for(dicom_model, upload_root) as client, caplog.at_level(logging.INFO):
        response = post(client, [("jane-doe-head.dcm", data)])
    request_id = response.headers["x-request-id"]
    result = response.json()["results"][0]
    assert result["dicom"]["patient_id"] == "DOE^JANE"  # the caller's own data comes back
    text = caplog.text
    assert f"request={request_id}" in text and result["sha256"][:16] in text
    assert "DOE" not in text and "jane" not in text.lower()


# -- page, pictures, series, segmenter -------------------------------------------------------------
def test_the_page_never_parses_data_as_html(dicom_model, upload_root):
    with client_for(dicom_model, upload_root) as client:
        page = client.get("/")
        script = client.get("/static/app.js").text
    assert page.status_code == 200 and "stroke-serve" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_a_series_gets_a_summary_row_and_dicom_its_window_views(dicom_model, upload_root, tmp_path):
    study = "1.2.826.0.1.3680043.8.498.1"
    files = [
        (f"s{i}.dcm", dicom_bytes(tmp_path, "P7", instance=i, study_uid=study)) for i in range(3)
    ]
    files.append(("other.dcm", dicom_bytes(tmp_path, "P8")))
    files.append(("slice.png", png_bytes(np.full((40, 40), 90, np.uint8))))
    with client_for(dicom_model, upload_root) as client:
        body = post(client, files, "?views=true&overlay=true").json()
    (row,) = body["series"]
    assert row["patient_id"] == "P7" and row["files"] == [0, 1, 2] and row["aggregation"] == "max"
    assert [r["series"] for r in body["results"]] == [1, 1, 1, None, None]
    rule = dicom_model.rule
    assert row["threshold"] in (rule.patient_threshold("max"), rule.threshold)
    for result in body["results"]:
        expected = {"model", "gradcam"} | (
            {"brain", "subdural", "stroke", "bone"} if result["type"] == "dicom" else set()
        )
        assert set(result["images"]) == expected
        assert result["images"]["gradcam"].startswith("data:image/png;base64,")


class SquareSegmenter:
    """A stand-in segmenter: a 10 x 10 px lesion in a 40 px square."""

    name = "square (test)"

    def segment(self, path: Path) -> LesionMask:
        assert path.is_file()
        mask = np.zeros((40, 40), bool)
        mask[10:20, 15:25] = True
        return LesionMask(mask, int(mask.sum()), 12.5)


def test_a_segmenter_adds_the_lesion_outline_and_area(dicom_model, upload_root):
    settings = ServeSettings(tmp_dir=str(upload_root))
    app = create_app(dicom_model, settings, segmenter=SquareSegmenter())
    with TestClient(app) as client:
        assert client.get("/api/model").json()["segmenter"] == "square (test)"
        body = post(client, [("a.png", png_bytes(np.full((40, 40), 90, np.uint8)))]).json()
    lesion = body["results"][0]["lesion"]
    assert lesion["area_px"] == 100 and lesion["area_mm2"] == 12.5
    (polygon,) = lesion["outline"]
    xs, ys = zip(*polygon, strict=True)
    assert min(xs) == pytest.approx(15.5 / 40) and max(ys) == pytest.approx(19.5 / 40)


def test_seg_ckpt_path_must_name_a_readable_segmentation_checkpoint(tmp_path):
    assert served(None, "seg_ckpt_path") is None
    with pytest.raises(ConfigError, match="seg_ckpt_path=.*missing.ckpt.*does not exist"):
        served(tmp_path / "missing.ckpt", "seg_ckpt_path")
    (tmp_path / "seg.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="seg_ckpt_path=.*seg.ckpt.*not a readable"):
        served(tmp_path / "seg.ckpt", "seg_ckpt_path")


def test_the_serve_config_composes_with_its_defaults():
    cfg = compose_config("serve", ["ckpt_path=x.ckpt"])
    assert cfg.host == "127.0.0.1" and cfg.port == 8000 and cfg.threshold == "auto"
    assert cfg.serve.token is None and list(cfg.serve.cors_origins) == []
    assert cfg.serve._target_ == "stroke.serve.settings.ServeSettings"


def test_bad_upload_names_are_displayed_not_used(dicom_model, upload_root):
    name = "<img src=x onerror=alert(1)>.png"
    with client_for(dicom_model, upload_root) as client:
        body = post(client, [(name, png_bytes(np.full((40, 40), 90, np.uint8)))]).json()
    assert body["results"][0]["name"] == name  # JSON carries text; the page escapes it


# -- the inference worker -------------------------------------------------------------------------
def test_queued_jobs_share_batches_and_each_gets_its_own_answer(dicom_model, monkeypatch):
    original, sizes, gate = dicom_model.probabilities, [], threading.Event()

    def gated(batch):  # holds the first batch until every job is queued
        gate.wait(30)
        sizes.append(len(batch))
        return original(batch)

    monkeypatch.setattr(dicom_model, "probabilities", gated)
    worker = InferenceWorker(dicom_model, max_batch=8, batch_wait_ms=0, max_queue=64)
    worker.start()
    rng = np.random.default_rng(0)
    shape = (1, 32, 32)
    inputs = [rng.normal(size=(n, *shape)).astype(np.float32) for n in (1, 3, 2, 5, 1, 4, 11)]
    try:
        futures = [worker.submit(x) for x in inputs]
        gate.set()
        answers = [[f.result(timeout=60) for f in fs] for fs in futures]
    finally:
        gate.set()
        worker.stop()
    monkeypatch.undo()
    for x, parts in zip(inputs, answers, strict=True):
        probs = np.concatenate([a.probs for a in parts])
        np.testing.assert_allclose(probs, dicom_model.probabilities(x), atol=1e-5)
    assert sum(sizes) == sum(len(x) for x in inputs) and max(sizes) <= 8
    assert len(sizes) < 8  # 8 jobs (the 11 images are two) in fewer forward passes


def test_a_full_queue_is_refused_not_grown(dicom_model, monkeypatch):
    gate = threading.Event()
    original = dicom_model.probabilities
    monkeypatch.setattr(dicom_model, "probabilities", lambda b: (gate.wait(30), original(b))[1])
    worker = InferenceWorker(dicom_model, max_batch=2, batch_wait_ms=0, max_queue=2)
    worker.start()
    one = np.zeros((1, 1, 32, 32), np.float32)
    try:
        worker.submit(one)  # taken by the worker, which waits at the gate
        time.sleep(0.2)
        worker.submit(one)
        worker.submit(one)
        with pytest.raises(WorkerBusy):
            worker.submit(one)
    finally:
        gate.set()
        worker.stop()


def test_a_fold_ensemble_is_served_as_stroke_predict_averages_it(
    trained_run, phantom_dir, tmp_path, upload_root
):
    """Several checkpoints (or a CV multirun) are one model in the server as in stroke-predict:
    the mean of the members' probabilities, decided by argmax, without a Grad-CAM map."""
    last = trained_run / "checkpoints" / "last.ckpt"
    best = best_checkpoint(trained_run)
    members = f"[{last},{best}]"
    pngs = [
        Path(shutil.copy(p, tmp_path / p.name)) for p in sorted(phantom_dir.glob("*/P*.png"))[:3]
    ]
    predicted = predict_csv(members, pngs, tmp_path / "predictions.csv")
    model = served(compose_config("serve", [f"ckpt_path={members}"]).ckpt_path, "ckpt_path")
    assert model.classifier.members == (last, best) and not model.can_explain
    assert "argmax" in model.rule.source
    with client_for(model, upload_root) as client:
        assert_same_probabilities(api_probabilities(client, pngs), predicted)
        card = client.get("/api/model").json()
        assert card["ensemble"] == [str(last), str(best)]
        (result,) = post(client, [(pngs[0].name, pngs[0].read_bytes())], "?overlay=true").json()[
            "results"
        ]
    assert result["error"] in ("", None) and "gradcam" not in (result.get("images") or {})
