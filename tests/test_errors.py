"""The error contract of every command: one `error:` line and a status per kind, or a traceback."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch
from commands import run_main
from conftest import run_module
from hydra.errors import ConfigCompositionException, InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf.errors import MissingMandatoryValue

from stroke.cli import eval as eval_cli
from stroke.cli import runs as runs_cli
from stroke.cli import train as train_cli
from stroke.cli.errors import EXIT_CODES, classify, command, one_line
from stroke.errors import CheckpointError, ConfigError, DatasetError, StorageError
from stroke.runs.interrupt import RunInterrupted


def _caused(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (ConfigError("data.batch_size must be an integer >= 1, got 0"), 2, "data.batch_size"),
        (DatasetError("cannot decode image a.png: broken"), 3, "a.png"),
        (CheckpointError("ckpt_path='x.ckpt' does not exist"), 4, "x.ckpt"),
        (StorageError("cannot write run/metrics.json: No space left"), 5, "metrics.json"),
        (OSError(errno.ENOSPC, "No space left on device", "run/last.ckpt"), 5, "last.ckpt"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/status.json"), 5, "Read-only"),
        (MissingMandatoryValue("Missing mandatory value: data.root"), 2, "data.root"),
        (
            _caused(
                ConfigCompositionException("Could not override 'trainer.max_epoch'."),
                KeyError("max_epoch"),
            ),
            2,
            "trainer.max_epoch",
        ),
        (
            _caused(
                InstantiationException(
                    "Error in call to target 'x.Y':\nTypeError()\nfull_key: data"
                ),
                TypeError("Y() got an unexpected keyword argument 'foo'"),
            ),
            2,
            "'foo'",
        ),
        (
            _caused(
                InstantiationException("Error in call to target 'x.Y'"),
                DatasetError("data.root='/nope' does not exist"),
            ),
            3,
            "/nope",
        ),
        (MisconfigurationException("`max_epochs` must be >= -1"), 2, "max_epochs"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 6, "memory"),
    ],
)
def test_a_user_error_is_one_line_and_a_status_of_its_kind(exc, code, words):
    failure = classify(exc)
    assert failure is not None and failure.code == code
    assert words in failure.message and "\n" not in failure.message
    assert code in EXIT_CODES


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        KeyError("x"),
        OSError(errno.EIO, "I/O error"),
        _caused(InstantiationException("Error in call to target 'x.Y'"), RuntimeError("bug")),
    ],
)
def test_a_bug_is_not_dressed_up_as_a_user_error(exc):
    assert classify(exc) is None


def _raising(exc: BaseException):
    @command
    def main():
        raise exc

    main.__module__ = "stroke.cli.fake"
    return main


def test_the_wrapper_prints_error_and_hint_lines_and_exits_with_the_kind(capsys):
    main = _raising(ConfigError("data.image_size must be >= 8, got 4", hint="use 32 or more"))
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: data.image_size must be >= 8, got 4",
        "hint: use 32 or more",
    ]


def test_full_error_switch_adds_the_traceback_and_keeps_the_status(capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(SystemExit) as stop:
        _raising(DatasetError("bad.csv line 3: empty label"))()
    assert stop.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("error: bad.csv line 3: empty label")
    assert os.environ["HYDRA_FULL_ERROR"] == "1"  # the user's setting is left as it was


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        _raising(ZeroDivisionError("division by zero"))()
    assert "HYDRA_FULL_ERROR" not in os.environ  # set only while the command runs


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RunInterrupted(signal.SIGTERM), 143),
        (RunInterrupted(signal.SIGINT), 130),
        (SIGTERMException(), 143),  # Lightning's: a SystemExit(None), i.e. status 0 unwrapped
        (KeyboardInterrupt(), 130),
    ],
)
def test_a_signal_exits_128_plus_its_number(exc, code, capsys):
    with pytest.raises(SystemExit) as stop:
        _raising(exc)()
    assert stop.value.code == code
    assert "interrupted by SIG" in capsys.readouterr().err


def test_one_line_drops_hydras_own_advice():
    text = "Error locating target 'x', set env var HYDRA_FULL_ERROR=1 to see chained exception.\n a"
    assert one_line(text) == "Error locating target 'x' a"


# -- the real commands, in this process ----------------------------------------------------
def test_unknown_config_option_lists_the_choices(capsys):
    code, _, err = run_main(train_cli.main, "model=resnet_nope", capsys=capsys)
    assert code == 2
    assert err.splitlines()[0] == "error: In 'train': Could not find 'model/resnet_nope'"
    assert err.splitlines()[1].startswith("hint: choose one of model: cnn_bn, cnn_small")
    assert "_base" not in err and "Traceback" not in err


def test_misspelled_key_names_the_key_and_the_plus_syntax(capsys):
    code, _, err = run_main(train_cli.main, "trainer.max_epoch=3", capsys=capsys)
    assert code == 2
    assert "trainer.max_epoch" in err.splitlines()[0] and "not in struct" in err
    assert "+trainer.max_epoch=3" in err.splitlines()[1]


def test_unparsable_override(capsys):
    code, _, err = run_main(train_cli.main, "trainer.max_epochs=[", capsys=capsys)
    assert code == 2 and err.startswith("error: cannot parse an override")


def test_missing_mandatory_value_before_anything_runs(capsys, tmp_path):
    code, _, err = run_main(eval_cli.main, f"hydra.run.dir={tmp_path}", capsys=capsys)
    assert code == 2
    assert err.splitlines() == [
        "error: ckpt_path is not set (the config leaves it `???`: it has no default)",
        "hint: give it on the command line: ckpt_path=...",
    ]


def test_an_error_inside_the_job_is_one_line_without_hydras_preamble(capsys, tmp_path):
    code, _, err = run_main(
        runs_cli.main, f"path={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path}", capsys=capsys
    )
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"error: path={str(tmp_path / 'nope')!r}")
    assert "Error executing job" not in err


@pytest.mark.slow
def test_the_console_script_prints_one_line_or_the_full_traceback(phantom_dir, tmp_path):
    """A real process: Hydra's own error printing is bypassed, the status is the kind's."""
    args = ("trainer.max_epochs=abc", f"data.root={phantom_dir}")
    plain = run_module("stroke.cli.train", *args, f"hydra.run.dir={tmp_path / 'a'}")
    assert plain.returncode == 2, plain.stderr[-2000:]
    assert "Traceback" not in plain.stderr
    errors = [line for line in plain.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: trainer.max_epochs='abc': expected an integer or null"]
    full = run_module(
        "stroke.cli.train", *args, f"hydra.run.dir={tmp_path / 'b'}", env={"HYDRA_FULL_ERROR": "1"}
    )
    assert full.returncode == 2
    assert "Traceback (most recent call last)" in full.stderr
