"""The commands' own keys are checked by their declared constraints before anything heavy:
one line naming the key, the value and what is allowed (issue 26's examples)."""

from __future__ import annotations

import pytest
from conftest import run_module

from stroke.errors import ConfigError
from stroke.parameters import PREDICT, SERVE, Integer, Probability, check


@pytest.mark.parametrize(
    ("cfg", "constraints", "message"),
    [
        ({"batch_size": 0}, PREDICT, "batch_size=0: expected an integer >= 1"),
        ({"batch_size": True}, PREDICT, "batch_size=True: expected an integer >= 1"),
        ({"num_workers": -1}, PREDICT, "num_workers=-1: expected an integer >= 0 or 'auto'"),
        ({"backend": "tensorrt"}, PREDICT, r"backend='tensorrt': expected one of \['torch'"),
        ({"port": 70000}, SERVE, "port=70000: expected an integer in 0..65535"),
        ({"threshold": 1.5}, SERVE, r"threshold=1.5: expected a probability in \(0, 1\) or"),
    ],
)
def test_a_value_outside_its_constraint_is_one_line(cfg, constraints, message):
    with pytest.raises(ConfigError, match=message):
        check(cfg, constraints)


def test_values_inside_their_constraints_pass():
    check({"batch_size": 1, "num_workers": "auto", "image_size": None}, PREDICT)
    check({"port": 0, "threshold": "auto", "tta": None}, SERVE)
    assert Integer(1, 3).problem(2) is None and Probability().problem(0.5) is None


@pytest.mark.parametrize(
    ("module", "args", "line"),
    [
        ("stroke.cli.predict", ["ckpt_path=x.ckpt", "inputs=x.png", "batch_size=0"],
         "error: batch_size=0: expected an integer >= 1"),
        ("stroke.cli.serve", ["ckpt_path=x.ckpt", "port=70000"],
         "error: port=70000: expected an integer in 0..65535"),
    ],
)  # fmt: skip
def test_the_commands_refuse_them_before_loading_anything(module, args, line, tmp_path):
    result = run_module(module, *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert line in result.stderr.splitlines() and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("model.optimizer.lr=-1", "error: model.optimizer.lr=-1: expected a number > 0"),
        ("trainer.max_epochs=-5",
         "error: trainer.max_epochs=-5: expected an integer >= -1 or null"),
        ("data.batch_size=0", "error: data.batch_size=0: expected an integer >= 1"),
        ("data.num_workers=-2", "error: data.num_workers=-2: expected an integer >= 0 or 'auto'"),
        ("data.val_fraction=1.5", "error: data.val_fraction=1.5: expected a number in [0, 1)"),
        ("data.image_size=4", "error: data.image_size=4: expected an integer >= 8"),
        ("evaluation.ci_level=95",
         "error: evaluation.ci_level=95: expected a probability in (0, 1)"),
        ("model.tta=1", "error: model.tta=1: expected true or false"),
    ],
)  # fmt: skip
def test_stroke_train_refuses_a_training_key_before_reading_any_data(override, line, tmp_path,
                                                                    capsys):  # fmt: skip
    from commands import run_main

    from stroke.cli import train as train_cli

    # the data folder does not exist: the value is refused before it would be looked at
    code, _, err = run_main(train_cli.main, f"data.root={tmp_path / 'nowhere'}", override,
                            f"hydra.run.dir={tmp_path / 'run'}", capsys=capsys)  # fmt: skip
    assert code == 2, err[-2000:]
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == [line]


def test_the_training_declaration_covers_the_keys_users_set_most():
    from stroke.runs.preflight import training_constraints

    declared = training_constraints()
    for key in ("data.batch_size", "data.num_workers", "data.val_fraction", "data.test_fraction",
                "data.image_size", "model.optimizer.lr", "trainer.max_epochs",
                "evaluation.target_sensitivity"):  # fmt: skip
        assert key in declared, key


def test_stroke_eval_checks_its_declared_keys_before_reading_the_checkpoint(tmp_path, capsys):
    """Found by the fuzzing harness: EVAL was declared but stroke-eval never checked it."""
    from commands import run_main

    from stroke.cli import eval as eval_cli

    args = [f"ckpt_path={tmp_path / 'none.ckpt'}", "seed=abc", "evaluation.n_boot=-1"]
    code, _, err = run_main(eval_cli.main, *args, f"hydra.run.dir={tmp_path}", capsys=capsys)
    assert code == 2, err[-2000:]
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == [
        "error: seed='abc': expected an integer"
    ]
