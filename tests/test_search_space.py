"""Hydra overrides read as an Optuna search space: each form, its bounds, and its errors."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from stroke.errors import ConfigError
from stroke.sweep.search_space import (
    params_to_overrides,
    parse_search_space,
    suggest,
    trial_overrides,
)


def distribution(override: str):
    space = parse_search_space([override])
    assert space.fixed == {}
    return space.distributions[override.split("=", 1)[0]]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=choice(cnn_small, cnn_bn)", CategoricalDistribution(["cnn_small", "cnn_bn"])),
        ("model=cnn_small,cnn_bn", CategoricalDistribution(["cnn_small", "cnn_bn"])),
        ("data.batch_size=choice(16, 32, 64)", CategoricalDistribution([16, 32, 64])),
        ("x=choice(true, 0.5, [1,2])", CategoricalDistribution([True, 0.5, "[1,2]"])),
        # shuffle() means unordered; the order is kept, the same in every process of a study
        ("x=shuffle(choice(b, a))", CategoricalDistribution(["b", "a"])),
        ("x=shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3, 4])),
        # a range includes stop when a step reaches it (as Hydra's Optuna sweeper did)
        ("x=range(1, 10, step=2)", IntDistribution(1, 9, step=2)),
        ("x=range(1, 5)", IntDistribution(1, 5)),
        ("x=range(0.1, 1.0, step=0.1)", FloatDistribution(0.1, 1.0, step=0.1)),
        ("x=range(0, 1, step=0.25)", FloatDistribution(0.0, 1.0, step=0.25)),
        ("model.backbone.drop_rate=interval(0.0, 0.6)", FloatDistribution(0.0, 0.6)),
        ("x=interval(1, 100)", FloatDistribution(1.0, 100.0)),  # Hydra's interval is float
        ("x=int(interval(1, 100))", IntDistribution(1, 100)),
        ("x=tag(log, interval(1, 100))", FloatDistribution(1.0, 100.0, log=True)),
        ("x=tag(log, int(interval(1, 100)))", IntDistribution(1, 100, log=True)),
        (
            "model.optimizer.lr=tag(log, interval(1e-4, 3e-3))",
            FloatDistribution(1e-4, 3e-3, log=True),
        ),
    ],
)
def test_each_sweep_form_gives_its_optuna_distribution(override, expected):
    got = distribution(override)
    assert type(got) is type(expected)
    assert got == expected  # bounds, step, log, choices


def test_plain_values_are_fixed_as_override_text():
    space = parse_search_space(["model=cnn_small", "+trainer.limit_train_batches=3", "x=a\\,b"])
    assert space.distributions == {}
    assert space.fixed == {"model": "cnn_small", "+trainer.limit_train_batches": "3", "x": "a\\,b"}


def test_the_last_override_of_a_key_wins():
    """The command line comes after `params`: it fixes a searched key, or searches a fixed one."""
    space = parse_search_space(
        ["model=choice(cnn_small, cnn_bn)", "x=1", "model=cnn_small", "x=interval(0, 1)"]
    )
    assert space.fixed == {"model": "cnn_small"}
    assert list(space.distributions) == ["x"]


def test_params_become_overrides_with_hydra_literals():
    params = OmegaConf.create({"a": "choice(x, y)", "b": None, "c": True, "d": 1e-5, "e": [1, 2]})
    assert params_to_overrides(params) == [
        "a=choice(x, y)",
        "b=null",
        "c=true",
        "d=1e-05",
        "e=[1,2]",
    ]
    assert params_to_overrides(None) == []


def test_the_older_search_space_form_is_read():
    legacy = OmegaConf.create(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "x": {"type": "float", "low": -5.5, "high": 5.5, "step": 0.5},
            "depth": {"type": "int", "low": 2, "high": 8, "step": 2},
            "model": {"type": "categorical", "choices": ["cnn_small", "cnn_bn"]},
        }
    )
    space = parse_search_space(["depth=4"], legacy)  # params and the command line win
    assert space.distributions == {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "x": FloatDistribution(-5.5, 5.5, step=0.5),
        "model": CategoricalDistribution(["cnn_small", "cnn_bn"]),
    }
    assert space.fixed == {"depth": "4"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=glob(cnn_*)", r"^model=glob\(cnn_\*\): cannot be searched by Optuna; allowed: "),
        ("x=tag(int, interval(1, 10))", r"^x=tag\(int, .*unknown tag\(s\) \['int'\]"),
        ("x=tag(log, choice(1, 10))", r"^x=tag\(log, choice.*tags only apply to interval"),
        ("x=interval(1, 0)", r"^x=interval\(1, 0\): .*low"),  # Optuna's own words follow
        ("x=tag(log, interval(0, 1))", r"^x=tag\(log, interval\(0, 1\)\): .*low"),
        ("x=range(5, 1)", r"^x=range\(5, 1\): a searched range needs start <= stop"),
        ("x=choice(a", r"^'x=choice\(a' is not a Hydra override"),
    ],
)
def test_what_cannot_be_searched_is_a_one_line_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_search_space([override])
    assert "\n" not in str(error.value).strip()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "normal", "low": 0, "high": 1}, r"search_space\.x\.type='normal': expected int"),
        ({"type": "float", "low": 0}, r"search_space\.x: missing key 'high'"),
        ({"type": "float", "low": 0, "high": 1, "q": 0.1}, r"search_space\.x: unknown key"),
        ({"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}, "search_space.x="),
        ("interval(0, 1)", r"search_space\.x='interval\(0, 1\)': .*hydra\.sweeper\.params"),
    ],
)
def test_a_bad_older_search_space_entry_names_hydra_sweeper_search_space(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_search_space([], {"x": spec})


def test_a_trial_suggests_each_distribution_and_writes_its_overrides():
    space = parse_search_space(
        [
            "model=choice(cnn_small, cnn_bn)",
            "lr=tag(log, interval(1e-4, 3e-3))",
            "depth=range(2, 8, step=2)",
            "flag=choice(true, false)",
            "augmentation=none",
        ]
    )
    trial = optuna.create_study().ask()
    for key, dist in space.distributions.items():
        suggest(trial, key, dist)
    assert trial.params["model"] in ("cnn_small", "cnn_bn")
    assert 1e-4 <= trial.params["lr"] <= 3e-3
    assert trial.params["depth"] in (2, 4, 6, 8)
    overrides = dict(o.split("=", 1) for o in trial_overrides(trial.params, space.fixed))
    assert overrides["augmentation"] == "none"
    assert overrides["flag"] in ("true", "false")  # Hydra's literals, not Python's True
    assert float(overrides["lr"]) == trial.params["lr"]
