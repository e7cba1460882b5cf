"""Declared constraints of the commands' own keys (`batch_size`, `port`, ...), checked in one
place before anything heavy starts, so a bad value is one line naming the key, the value and
what is allowed, never the traceback of the library that would receive it.

Each command declares its keys once (`PREDICT`, `SERVE`, `EVAL`); `check(cfg, PREDICT)` runs
them. The data module's keys are checked by its settings' groups (stroke/data/settings.py),
a model's by its constructor, the server's limits by `ServeSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stroke.errors import ConfigError


@dataclass(frozen=True)
class Integer:
    """An integer in [minimum, maximum]; `also` lists other accepted values (`auto`, null)."""

    minimum: int | None = None
    maximum: int | None = None
    also: Sequence[Any] = ()

    def problem(self, value: Any) -> str | None:
        if value in self.also:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (self.minimum is None or value >= self.minimum)
        ok = ok and (self.maximum is None or value <= self.maximum)
        return None if ok else f"an integer {self._range()}{self._also()}"

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"in {self.minimum}..{self.maximum}"
        return f">= {self.minimum}" if self.minimum is not None else f"<= {self.maximum}"

    def _also(self) -> str:
        return "".join(f" or {'null' if v is None else repr(v)}" for v in self.also)


@dataclass(frozen=True)
class Probability:
    """A number strictly between 0 and 1; `also` lists other accepted values."""

    also: Sequence[Any] = ()

    def problem(self, value: Any) -> str | None:
        if value in self.also:
            return None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = number and 0 < value < 1
        also = "".join(f" or {'null' if v is None else repr(v)}" for v in self.also)
        return None if ok else f"a probability in (0, 1){also}"


@dataclass(frozen=True)
class Choice:
    """One of `values`."""

    values: Sequence[Any]

    def problem(self, value: Any) -> str | None:
        return None if value in self.values else f"one of {list(self.values)}"


WORKERS = Integer(0, also=("auto",))
#: stroke-predict's keys
PREDICT = {
    "batch_size": Integer(1),
    "num_workers": WORKERS,
    "image_size": Integer(8, also=(None,)),
    "backend": Choice(("torch", "onnx")),
    "tta": Choice((None, True, False)),
    "explain": Choice((True, False)),
}
#: stroke-serve's keys (its limits are ServeSettings')
SERVE = {
    "port": Integer(0, 65535),
    "threshold": Probability(also=("auto", "argmax", None)),
    "tta": Choice((None, True, False)),
}
#: stroke-eval's keys
EVAL = {"seed": Integer()}


def check(cfg: Mapping[str, Any], constraints: Mapping[str, Any], prefix: str = "") -> None:
    """A ConfigError naming the first key of `cfg` whose value breaks its constraint."""
    for key, constraint in constraints.items():
        if key not in cfg:
            continue
        value = cfg[key]
        expected = constraint.problem(value)
        if expected is not None:
            raise ConfigError(f"{prefix}{key}={value!r}: expected {expected}")
