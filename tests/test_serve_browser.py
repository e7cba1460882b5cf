"""stroke-serve's page in a real browser: Playwright driving the system's Chromium.

The server runs as a user starts it (the console script, on a free local port, with a token
from the environment); the page is opened with its token, real files go in through its
file input, and what it shows is checked against the API's own answer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import one_series
from dicom_factory import ct_dataset, head_slice_hu, save
from PIL import Image

from stroke.serve.browser import CHROMIUM_ARGS, find_chromium

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token-0123"
XSS_NAME = "<img src=x onerror=alert(1)>.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    script = Path(sys.executable).parent / "stroke-serve"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "stroke.cli.serve"]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    request = urllib.request.Request(f"{url}/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"stroke-serve exited:\n{server.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise AssertionError(f"stroke-serve did not answer on {url} within {timeout} s")


@contextmanager
def running_server(ckpt: str, run_dir: Path):
    """`stroke-serve ckpt_path=<ckpt>` on a free 127.0.0.1 port, as a user starts it; its URL."""
    port = free_port()
    env = {**os.environ, "STROKE_SERVE_TOKEN": TOKEN}
    command = [*serve_command(), f"ckpt_path={ckpt}", f"port={port}", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(dicom_run, tmp_path_factory):
    """`stroke-serve` on the DICOM-trained checkpoint; its URL."""
    ckpt = json.loads((dicom_run / "metrics.json").read_text())["best_model_path"]
    with running_server(ckpt, tmp_path_factory.mktemp("serve_run")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (its own browser download cannot work offline)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (/usr/bin/chromium, $STROKE_CHROMIUM or on the PATH)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def upload_files(tmp_path: Path) -> list[tuple[str, bytes]]:
    """A DICOM series of two slices, a PNG, a JPEG, a file with a hostile name, a broken file."""
    rng = np.random.default_rng(1)
    study = "1.2.826.0.1.3680043.8.498.77"
    files = []
    for i in range(2):
        ds = ct_dataset(head_slice_hu(64, i == 1, rng), "BROWSER01", i + 1, study_uid=study)
        files.append((f"slice{i}.dcm", save(ds, tmp_path / f"slice{i}.dcm").read_bytes()))
    gray = np.clip(np.asarray(head_slice_hu(64, True, rng)) + 100, 0, 255).astype(np.uint8)
    files.append(("slice.png", encoded(gray, "PNG")))
    files.append(("photo.jpg", encoded(np.stack([gray] * 3, axis=-1), "JPEG")))
    files.append((XSS_NAME, encoded(255 - gray, "PNG")))
    files.append(("broken.png", b"\x89PNG\r\n\x1a\n but nothing more"))
    return files


def api_answer(url: str, files: list[tuple[str, bytes]]) -> dict:
    """POST the files to the API as any script would (multipart, bearer token)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, data in files:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/api/predict?overlay=true&views=true",
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": f"Bearer {TOKEN}",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_the_page_predicts_uploads_like_the_api(server, browser, tmp_path):
    files = upload_files(tmp_path)
    expected = api_answer(server, files)
    by_index = {r["index"]: r for r in expected["results"]}
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    dialogs, page_errors = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda err: page_errors.append(str(err)))

    # without the token the page is refused; opened once with it, a cookie keeps it
    assert page.goto(f"{server}/").status == 401
    page.goto(f"{server}/?token={TOKEN}")
    assert page.url == f"{server}/"
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert "Not a medical device" in page.inner_text("#notice")
    assert page.inner_text("#card-checkpoint").endswith(expected["checkpoint_sha256"][:16])
    assert "validation" in page.inner_text("#card-decision")

    payloads = [{"name": n, "mimeType": "application/octet-stream", "buffer": d} for n, d in files]
    page.set_input_files("#file-input", payloads)
    page.wait_for_selector(f"body[data-results='{len(files)}']", timeout=120_000)

    cards = page.locator("article.result")
    assert cards.count() == len(files)
    for i in range(len(files)):
        card, want = cards.nth(i), by_index[i]
        assert card.locator(".name").inner_text() == want["name"]
        if want["probabilities"] is None:
            assert card.locator(".error").inner_text() == want["error"]
            continue
        for row in card.locator(".bar-row").all():
            cls = row.get_attribute("data-class")
            shown = float(row.locator(".value").inner_text())
            assert shown == pytest.approx(want["probabilities"][cls], abs=5e-5)
            assert float(row.get_attribute("data-probability")) == pytest.approx(
                want["probabilities"][cls], abs=1e-6
            )
        assert card.locator(".decision").get_attribute("data-decided") == want["predicted_class"]
    # the hostile name is text: no element was made from it, no script ran
    assert page.locator(".result .name", has_text=XSS_NAME).count() == 1
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == [] and page_errors == []

    # the series row, aggregated on the server as stroke-eval does
    (row,) = expected["series"]
    assert page.locator("#series-table tbody tr").count() == 1
    assert "BROWSER01" in page.inner_text("#series-table tbody tr")

    # CSV: one row per file and per series, the API's probabilities
    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.suggested_filename == "stroke-predictions.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == len(files) + 1
    for want, got in zip(expected["results"], rows, strict=False):
        assert got["name"].lstrip("'") == want["name"]
        for cls, p in (want["probabilities"] or {}).items():
            assert float(got[f"prob_{cls}"]) == pytest.approx(p, abs=1e-9)
    assert float(rows[-1]["prob_hemorrhage"]) == pytest.approx(row["probabilities"]["hemorrhage"])

    # a DICOM window re-renders the display only
    dicom_card = cards.nth(0)
    view = dicom_card.locator("img.view-image")
    assert view.get_attribute("src") == by_index[0]["images"]["model"]
    dicom_card.locator("select.window-select").select_option("bone")
    assert view.get_attribute("src") == by_index[0]["images"]["bone"]
    assert "model's own window" in dicom_card.locator(".window-note").inner_text()

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] > 600 and pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, bars, scans: not blank
    page.close()


def open_page(browser, url: str):
    """The page opened with the token, its model card loaded; (page, page errors)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{url}/?token={TOKEN}")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    return page, errors


def assert_label_bars(bars, want: dict) -> None:
    """Each label's bar: the API's probability, its threshold marked, found labels highlighted."""
    assert sorted(bar.get_attribute("data-class") for bar in bars) == sorted(want["probabilities"])
    for bar in bars:
        label = bar.get_attribute("data-class")
        assert float(bar.get_attribute("data-probability")) == pytest.approx(
            want["probabilities"][label], abs=1e-6
        )
        assert float(bar.get_attribute("data-threshold")) == want["thresholds"][label]
        assert bar.locator(".threshold").count() == 1
        assert ("decided" in bar.get_attribute("class")) == (label in want["labels"])


def test_the_page_shows_a_multilabel_series_label_by_label(
    subtype_run, subtype_phantom, browser, tmp_path
):
    ckpt = subtype_run / "checkpoints" / "last.ckpt"
    files = [(p.name, p.read_bytes()) for p in one_series(subtype_phantom)[:6]]
    with running_server(str(ckpt), tmp_path / "serve_run") as url:
        expected = api_answer(url, files)
        page, errors = open_page(browser, url)
        assert "epidural" in page.inner_text("#card-classes")
        thresholds = expected["decision"]["thresholds"]
        assert f"any {thresholds['any']:.4f}" in page.inner_text("#card-decision")
        kind = "application/octet-stream"
        payloads = [{"name": n, "mimeType": kind, "buffer": d} for n, d in files]
        page.set_input_files("#file-input", payloads)
        page.wait_for_selector(f"body[data-results='{len(files)}']", timeout=120_000)

        cards = page.locator("article.result")
        assert cards.count() == len(files)
        for i, want in enumerate(expected["results"]):
            card = cards.nth(i)
            assert want["error"] is None and want["labels"] is not None
            assert_label_bars(card.locator(".bar-row").all(), want)
            decision = card.locator(".decision")
            assert decision.get_attribute("data-decided") == want["predicted_class"]
            assert decision.inner_text().startswith("Findings: ")

        (want,) = expected["series"]
        row = page.locator("#series-table tbody tr")
        assert row.count() == 1 and row.get_attribute("data-decided") == want["predicted_class"]
        assert_label_bars(row.locator(".bar-row").all(), want)
        assert errors == []
        page.close()
