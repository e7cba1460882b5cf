"""Declared constraints of the user-facing keys, checked in one place before anything heavy
starts, so a bad value is one line naming the key, the value and what is allowed, never the
traceback of the library that would receive it (scikit-learn's `_parameter_constraints`).

A key is declared once, beside the others of its command or config group: the commands' own
keys here (`PREDICT`, `SERVE`, `EVAL`), the training keys of the model, optimizer, trainer
and evaluation groups here (`TRAINING`), the data keys beside the settings group that holds
them (stroke/data/settings.py, stroke/data/preprocessing.py: their choices live there).
`check(cfg, constraints)` runs any of them; `stroke-train` runs all of its keys' before it
reads the data (stroke/runs/preflight.py). Relations between keys (`data.fold` < `data.folds`)
stay with the code that needs both.
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
        return None if ok else f"an integer{self._range()}{self._also()}"

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" in {self.minimum}..{self.maximum}"
        if self.minimum is not None:
            return f" >= {self.minimum}"
        return f" <= {self.maximum}" if self.maximum is not None else ""

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
class Number:
    """A real number (an integer too); `minimum`/`maximum` are inclusive bounds, `above`/
    `below` exclusive ones; `also` lists other accepted values."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    also: Sequence[Any] = ()

    def problem(self, value: Any) -> str | None:
        if value in self.also:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
        ok = ok and (self.minimum is None or value >= self.minimum)
        ok = ok and (self.maximum is None or value <= self.maximum)
        ok = ok and (self.above is None or value > self.above)
        ok = ok and (self.below is None or value < self.below)
        also = "".join(f" or {'null' if v is None else repr(v)}" for v in self.also)
        return None if ok else f"a number{self._range()}{also}"

    def _range(self) -> str:
        low = self.minimum if self.minimum is not None else self.above
        high = self.maximum if self.maximum is not None else self.below
        if low is not None and high is not None:
            left = "[" if self.minimum is not None else "("
            right = "]" if self.maximum is not None else ")"
            return f" in {left}{low:g}, {high:g}{right}"
        if low is not None:
            return f" {'>=' if self.minimum is not None else '>'} {low:g}"
        if high is not None:
            return f" {'<=' if self.maximum is not None else '<'} {high:g}"
        return ""


@dataclass(frozen=True)
class Boolean:
    """true or false (not 0/1, not "yes": a typo should not read as a switch)."""

    also: Sequence[Any] = ()

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or value in self.also:
            return None
        return "true or false" + "".join(
            f" or {'null' if v is None else repr(v)}" for v in self.also
        )


@dataclass(frozen=True)
class Choice:
    """One of `values`."""

    values: Sequence[Any]

    def problem(self, value: Any) -> str | None:
        return None if value in self.values else f"one of {list(self.values)}"


WORKERS = Integer(0, also=("auto",))
#: an input image's side after the letterbox: smaller leaves no pixels for a network's strides
IMAGE_SIZE = Integer(8)
#: a fraction of the data held out: none of it (0) up to, not including, all of it
FRACTION = Number(minimum=0, below=1)
#: stroke-predict's keys
PREDICT = {
    "batch_size": Integer(1),
    "num_workers": WORKERS,
    "image_size": Integer(8, also=(None,)),
    "backend": Choice(("torch", "onnx")),
    "tta": Choice((None, True, False)),
    "explain": Choice((True, False)),
    "threshold": Probability(also=(None,)),
}
#: stroke-serve's keys (its limits are ServeSettings')
SERVE = {
    "port": Integer(0, 65535),
    "threshold": Probability(also=("auto", "argmax", None)),
    "tta": Choice((None, True, False)),
}

#: stroke-train's keys of the model, optimizer, trainer and evaluation groups (the data
#: group's are its settings'); a key a config does not have is not checked
TRAINING = {
    "seed": Integer(),
    "model.optimizer.lr": Number(above=0),
    "model.optimizer.weight_decay": Number(minimum=0),
    "model.optimizer.momentum": Number(minimum=0, below=1),
    "model.label_smoothing": Number(minimum=0, below=1),
    "model.backbone.drop_rate": Number(minimum=0, below=1),
    "model.mixup.mixup_alpha": Number(minimum=0),
    "model.mixup.cutmix_alpha": Number(minimum=0),
    "model.mixup.prob": Number(0, 1),
    "model.tta": Boolean(),
    "trainer.max_epochs": Integer(-1, also=(None,)),
    "trainer.min_epochs": Integer(0, also=(None,)),
    "trainer.max_steps": Integer(-1),
    "trainer.check_val_every_n_epoch": Integer(1, also=(None,)),
    "trainer.log_every_n_steps": Integer(1, also=(None,)),
    "trainer.accumulate_grad_batches": Integer(1),
    "trainer.gradient_clip_val": Number(minimum=0, also=(None,)),
    "trainer.limit_train_batches": Number(minimum=0, also=(None,)),
    "trainer.limit_val_batches": Number(minimum=0, also=(None,)),
    "trainer.limit_test_batches": Number(minimum=0, also=(None,)),
    "evaluation.n_boot": Integer(0),
    "evaluation.ci_level": Probability(),
    "evaluation.target_sensitivity": Probability(),
    "evaluation.calibration_bins": Integer(1),
    "evaluation.gallery_size": Integer(0),
}
#: stroke-eval's keys: its seed and the evaluation group it shares with stroke-train
EVAL = {"seed": Integer(), **{k: c for k, c in TRAINING.items() if k.startswith("evaluation.")}}


_ABSENT = object()


def check(cfg: Mapping[str, Any], constraints: Mapping[str, Any], prefix: str = "") -> None:
    """A ConfigError naming the first key of `cfg` whose value breaks its constraint.

    Keys may be dotted (`model.optimizer.lr`): they are looked up group by group, and one
    whose group or key `cfg` lacks is not checked.
    """
    for key, constraint in constraints.items():
        value = _lookup(cfg, key)
        if value is _ABSENT:
            continue
        expected = constraint.problem(value)
        if expected is not None:
            raise ConfigError(f"{prefix}{key}={value!r}: expected {expected}")


def _lookup(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(cfg, Mapping) or part not in cfg:
            return _ABSENT
        cfg = cfg[part]
    return cfg
