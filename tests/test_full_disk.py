"""A disk that fills while a command writes: the error names the file being written
(`error: cannot write <path>: No space left on device`), whichever writer meets the full
disk, ours, matplotlib's, Pillow's or Hydra's (issue 26)."""

from __future__ import annotations

import pytest
from commands import run_main
from faults import disk_full

from stroke.cli import eval as eval_cli

NO_SPACE = "No space left on device"


def _eval(trained_run, out, capsys, **fault):
    with disk_full(out, **fault):
        return run_main(eval_cli.main, f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
                        f"hydra.run.dir={out}", "evaluation.n_boot=10", capsys=capsys)  # fmt: skip


@pytest.mark.parametrize(
    "name", ["confusion_matrix.png", "predictions_test.csv", "metrics.json", "report.md"]
)
def test_stroke_eval_names_the_report_file_it_could_not_write(trained_run, tmp_path, capsys,
                                                              name):  # fmt: skip
    out = tmp_path / "eval"
    code, _, err = _eval(trained_run, out, capsys, when=lambda path: f"/.{name}." in path)
    assert code == 5, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot write {out / name}: {NO_SPACE}"]
    assert "Traceback" not in err
    assert not list(out.glob(f".{name}.*"))  # no temporary left behind


def test_a_disk_full_from_the_start_names_hydra_s_file_and_the_log_once(trained_run, tmp_path,
                                                                       capsys):  # fmt: skip
    out = tmp_path / "eval"
    code, _, err = _eval(trained_run, out, capsys, room=0)
    assert code == 5, err[-2000:]
    lines = err.splitlines()
    assert f"error: cannot write {out / '.hydra' / 'config.yaml'}: {NO_SPACE}" in lines
    assert [line for line in lines if line.startswith("warning: cannot write the log")] == [
        f"warning: cannot write the log {out / 'eval.log'}: {NO_SPACE}; logging to the console only"
    ]
    assert "Traceback" not in err and "Logging error" not in err
