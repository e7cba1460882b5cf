"""`stroke` installed from its wheel works outside the checkout, as a user's pip install does."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from stroke.config import source_checkout

REPO = source_checkout()
pytestmark = pytest.mark.skipif(REPO is None, reason="needs the source checkout to build from")


def test_every_package_of_the_source_is_in_the_wheel_list():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in ("stroke", "hydra_plugins")
        for p in (REPO / top).rglob("__init__.py")
    }
    assert found | {"stroke.conf"} == listed


def _run(cmd: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh virtualenv holding the built wheel; the dependencies are this environment's."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STROKE_HOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-q", "-w", root / "dist", REPO], root, env)  # fmt: skip
    (wheel,) = (root / "dist").glob("stroke-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root, env)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # the dependencies (torch and the rest, gigabytes) come from this environment, after the
    # venv's own site-packages: only stroke itself is new
    dependencies = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    (site / "zz_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
          "--no-deps", "--force-reinstall", wheel], root, env)  # fmt: skip
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return venv, env


@pytest.mark.slow
def test_installed_commands_run_from_another_directory(installed, tmp_path):
    venv, env = installed
    where = _run(
        [venv / "bin" / "python", "-c",
         "import stroke, stroke.config as c; print(stroke.__file__); print(c.source_checkout())"],
        tmp_path, env,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(venv)) and where[1] == "None"
    # every declared dependency is satisfied: `pip install stroke` alone resolves them
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "check"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert "stroke" not in check.stdout, check.stdout

    # stroke-serve's page ships inside the package
    page = "from stroke.serve.app import STATIC_DIR as d; print([p.name for p in d.iterdir()])"
    shipped = _run([venv / "bin" / "python", "-c", page], tmp_path, env).stdout
    assert all(name in shipped for name in ("index.html", "app.js", "style.css")), shipped

    _run(["stroke-synth", "n_patients=12", "slices_per_patient=2", "image_size=48"], tmp_path, env)
    assert (tmp_path / "data" / "phantom" / "manifest.csv").is_file()
    tiny = ["data.image_size=32", "data.batch_size=8", "trainer.accelerator=cpu"]
    _run(["stroke-train", "debug=fdr", *tiny], tmp_path, env)
    assert list((tmp_path / "outputs" / "debug" / "runs").glob("*/.hydra/config.yaml"))

    search = [
        "stroke-train", "hparams_search=cnn_optuna", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.study_name=wheel", *tiny, "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "logger=none", "~evaluation",
        "~callbacks.rich_progress_bar", "~callbacks.gradcam",
    ]  # fmt: skip
    _run(search, tmp_path, env)
    study = tmp_path / "outputs" / "train" / "studies" / "wheel"
    assert (study / "optuna.db").is_file()
    assert len(list(study.glob("*/metrics.json"))) == 2
