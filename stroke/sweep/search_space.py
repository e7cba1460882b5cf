"""The Optuna search space of a sweep, read from Hydra overrides.

The sweeper's `params` entries and the command's own overrides are Hydra overrides; each one
is either searched (a sweep) or fixed (a value passed unchanged to every trial):

    a,b,c  or  choice(a, b, c)        CategoricalDistribution((a, b, c))
    range(1, 9, step=2)               IntDistribution(1, 9, step=2)
    range(0.0, 1.0, step=0.25)        FloatDistribution(0.0, 1.0, step=0.25)
    shuffle(range(1, 4))              CategoricalDistribution((1, 2, 3, 4))
    interval(0.0, 0.6)                FloatDistribution(0.0, 0.6)
    int(interval(1, 100))             IntDistribution(1, 100)
    tag(log, interval(1e-4, 3e-3))    FloatDistribution(1e-4, 3e-3, log=True)
    key=value                         fixed

A range includes `stop` when its steps reach it, as in Hydra's Optuna sweeper and the older
`search_space` form ({type, low, high, step}); a grid's `range()` stops before it.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from stroke.errors import ConfigError

SEARCHABLE = (
    "a fixed value, a,b,c, choice(...), range(start, stop, step=...), interval(low, high), "
    "int(interval(low, high)) or tag(log, interval(low, high))"
)
#: keys of an entry of the older `hydra.sweeper.search_space` form
SPEC_KEYS = ("type", "low", "high", "log", "step", "choices")


class SearchSpace(NamedTuple):
    """What a sweep searches (Optuna distributions by key) and what it passes unchanged."""

    distributions: dict[str, BaseDistribution]
    #: key -> the value as override text
    fixed: dict[str, str]


def parse_search_space(
    overrides: Sequence[str], search_space: Mapping[str, Any] | None = None
) -> SearchSpace:
    """The search space of `search_space` entries, then `overrides`: the last one of a key wins,
    so the command line overrides `params`, searched or fixed."""
    distributions = {
        str(key): distribution_from_spec(str(key), spec)
        for key, spec in (search_space or {}).items()
    }
    fixed: dict[str, str] = {}
    for text in overrides:
        override = _parse(text)
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution_from_override(override, text)
        else:
            fixed[key] = override.get_value_element_as_str()
    return SearchSpace(distributions, fixed)


def params_to_overrides(params: Mapping[str, Any] | None) -> list[str]:
    """`hydra.sweeper.params` as override strings `key=value`."""
    return [f"{key}={override_text(value)}" for key, value in (params or {}).items()]


def _parse(text: str) -> Override:
    """One override parsed by Hydra's grammar; a syntax error names the override."""
    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as e:
        raise ConfigError(f"{text!r} is not a Hydra override: {e}") from e


def distribution_from_override(override: Override, text: str) -> BaseDistribution:
    """The Optuna distribution of a sweep override; `text` (the override) names it in errors."""
    sweep = override.value()
    if not isinstance(sweep, ChoiceSweep | RangeSweep | IntervalSweep):  # e.g. glob(*)
        raise ConfigError(f"{text}: cannot be searched by Optuna; allowed: {SEARCHABLE}")
    if sweep.tags and not isinstance(sweep, IntervalSweep):
        raise ConfigError(
            f"{text}: tags only apply to interval(...), as in tag(log, interval(low, high))"
        )
    try:
        if isinstance(sweep, ChoiceSweep):
            return _choice_distribution(sweep)
        if isinstance(sweep, RangeSweep):
            return _range_distribution(sweep, text)
        return _interval_distribution(sweep, text)
    except ConfigError:
        raise
    except ValueError as e:  # Optuna's own checks: low > high, log of a non-positive low
        raise ConfigError(f"{text}: {e}") from e


def _choice_distribution(sweep: ChoiceSweep) -> CategoricalDistribution:
    # shuffle() is ignored: a study refuses choices that change order between processes
    return CategoricalDistribution([_choice_value(x) for x in sweep.list])


def _choice_value(element: Any) -> bool | int | float | str:
    """A choice as Optuna stores it: numbers as they are, anything else as its override text."""
    return element if isinstance(element, bool | int | float) else Transformer.str(element)


def _range_distribution(sweep: RangeSweep, text: str) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step <= 0 or stop < start:
        raise ConfigError(f"{text}: a searched range needs start <= stop and a positive step")
    if all(isinstance(v, int) for v in (start, stop, step)):
        values: list[int] | list[float] = list(range(start, stop + 1, step))
    else:
        values = _float_steps(start, stop, step)
    if sweep.shuffle:  # an unordered set of values
        return CategoricalDistribution(values)
    if isinstance(values[0], int):
        return IntDistribution(start, values[-1], step=step)
    return FloatDistribution(float(start), values[-1], step=float(step))


def _float_steps(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, ... up to stop, counted in decimals so 0.1 steps land on 1.0."""
    start_, stop_, step_ = (decimal.Decimal(str(v)) for v in (start, stop, step))
    count = int((stop_ - start_) // step_) + 1
    return [float(start_ + i * step_) for i in range(count)]


def _interval_distribution(sweep: IntervalSweep, text: str) -> BaseDistribution:
    unknown = sorted(sweep.tags - {"log"})
    if unknown:
        raise ConfigError(f"{text}: unknown tag(s) {unknown}; the one tag allowed is log")
    log = "log" in sweep.tags
    if isinstance(sweep.start, int) and isinstance(sweep.end, int):  # int(interval(...))
        return IntDistribution(sweep.start, sweep.end, log=log)
    return FloatDistribution(float(sweep.start), float(sweep.end), log=log)


def distribution_from_spec(key: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """The distribution of an entry of the older `hydra.sweeper.search_space` form."""
    where = f"hydra.sweeper.search_space.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}={spec!r}: expected a mapping with keys {SPEC_KEYS}, "
            "or write it in hydra.sweeper.params (e.g. interval(0.0, 1.0))"
        )
    spec = OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else dict(spec)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {SPEC_KEYS}")
    try:
        return _spec_distribution(spec, where)
    except KeyError as e:
        raise ConfigError(f"{where}: missing key {e.args[0]!r} for type {spec.get('type')}") from e
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # Optuna's own checks, e.g. low > high
        raise ConfigError(f"{where}={spec}: {e}") from e


def _spec_distribution(spec: dict[str, Any], where: str) -> BaseDistribution:
    kind, log, step = spec.get("type"), bool(spec.get("log", False)), spec.get("step")
    if kind == "categorical":
        return CategoricalDistribution(spec["choices"])
    if kind == "int":
        return IntDistribution(int(spec["low"]), int(spec["high"]), log=log, step=int(step or 1))
    if kind == "float":
        return FloatDistribution(float(spec["low"]), float(spec["high"]), log=log, step=step)
    raise ConfigError(f"{where}.type={kind!r}: expected int, float or categorical")


def suggest(trial: Trial, key: str, distribution: BaseDistribution) -> Any:
    """Ask `trial` for a value of `key` through Optuna's public suggest API."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            key, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    raise ConfigError(f"{key}: cannot suggest a {type(distribution).__name__}")


def override_text(value: Any) -> str:
    """A value as the part after `=` of an override (strings are already override text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # Hydra reads true/false; str() would write True
        return "true" if value else "false"
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return Transformer.str(value)


def trial_overrides(params: Mapping[str, Any], fixed: Mapping[str, str]) -> tuple[str, ...]:
    """The overrides of one trial: its suggested values, then the fixed ones."""
    return tuple(f"{key}={override_text(value)}" for key, value in {**params, **fixed}.items())
