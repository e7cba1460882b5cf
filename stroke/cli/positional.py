"""A command's folder given positionally: `stroke-runs outputs/train/multiruns/<date>` as well as
`stroke-runs path=outputs/...`.

Hydra reads every word of the command line as an override, so a bare path ends in "cannot
parse an override". `positional_path` turns the one word that is neither an override nor a
Hydra flag into `<key>='<word>'` (quoted, so that a path with `,` or `=` is not read as a
sweep or a key) before Hydra sees it.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from stroke.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

#: Hydra's flags that take the next word as their value (hydra/_internal/utils.get_args_parser)
VALUE_FLAGS = frozenset(
    {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
     "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"}
)  # fmt: skip
#: `--info`/`-i` takes an optional value, one of these
INFO_VALUES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


#: Hydra's override: `key=value`, `+key=value`, `++key=value`, `~key` (a key starts with a
#: letter; a path such as `/runs/a=b` or `./x=y` is not one)
OVERRIDE = re.compile(r"^(\+\+|\+|~)?[A-Za-z_][\w.\-/@]*(=|$)")


def _is_override(word: str) -> bool:
    return bool(OVERRIDE.match(word)) and ("=" in word or word.startswith(("+", "~")))


def _quoted(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rewrite_positional(argv: list[str], key: str) -> list[str]:
    """`argv` (without the program name) with its one bare word given as `key=...`."""
    out: list[str] = []
    bare: list[str] = []
    takes_value = False
    for word in argv:
        if takes_value:
            out.append(word)
            takes_value = False
        elif word.startswith("-"):
            out.append(word)
            takes_value = word in VALUE_FLAGS
        elif out and out[-1] in ("--info", "-i") and word in INFO_VALUES or _is_override(word):
            out.append(word)
        else:
            bare.append(word)
            out.append(f"{key}={_quoted(word)}")
    if len(bare) > 1:
        raise ConfigError(
            f"{len(bare)} bare words {bare}: give one {key} (positionally or as {key}=...), "
            "the rest as key=value overrides"
        )
    if bare and any(w.split("=", 1)[0].lstrip("+~") == key for w in argv if _is_override(w)):
        raise ConfigError(f"{key} given twice: {bare[0]!r} and as {key}=...; give it once")
    return out


def _argv_rewritten(rewrite: Callable[[list[str]], list[str]]) -> Callable[[F], F]:
    """Decorate a command's `hydra.main` function (below `@command`, so that an error of the
    rewrite is one line) to give Hydra the command line as `rewrite` returns it."""

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> Any:
            sys.argv[1:] = rewrite(sys.argv[1:])
            return main(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def positional_path(key: str = "path") -> Callable[[F], F]:
    """A command that accepts its `key` positionally."""
    return _argv_rewritten(lambda argv: rewrite_positional(argv, key))


def rewrite_replacements(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """`argv` with each `key=<dict>` of `keys` made a replacement: Hydra merges a dict given
    to a dict node (so a preset's class map would keep its keys, and a new key is "not in
    struct"); setting it to null first replaces it, which is what a user giving a whole map
    means (`~key +key=...` would fail where the key is null)."""
    out: list[str] = []
    for word in argv:
        key, sep, value = word.partition("=")
        if sep and key in keys and value.lstrip().startswith("{"):
            out += [f"{key}=null", word]
        else:
            out.append(word)
    return out


def replaced_dicts(*keys: str) -> Callable[[F], F]:
    """A command where `key={...}` replaces the dict at `key` instead of merging into it."""
    return _argv_rewritten(lambda argv: rewrite_replacements(argv, keys))
