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
