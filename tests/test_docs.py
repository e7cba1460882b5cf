"""The README and docs/ stay true: their links lead to files, their commands compose.

Every `stroke-*` command quoted in a fenced code block is split as a shell would split it,
its sweeps are reduced to single values (each option of a swept config group once), and
the result is composed with Hydra from the packaged configs, as the command would compose
it. Nothing is trained or run.
"""

from __future__ import annotations

import re
import shlex
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep

from stroke.cli.positional import rewrite_positional
from stroke.config import CONFIG_MODULE

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]

#: The README's first fenced block: what a newcomer types first, true on a fresh machine.
FRONT_DOOR = (
    "make train   # set up .venv on first use, write the phantom head-CT data, "
    "train the default experiment\n"
    "make test    # same set-up, then the test suite"
)
README_MAX_LINES = 180
#: Fewer quoted commands than this means the extraction below broke, not that all is well.
MIN_COMMANDS = 90

FENCE = re.compile(r"^[ \t]*```([\w-]*)[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: Words that run the command after them.
WRAPPERS = {"srun", "time", "nohup", "exec"}
#: Where a shell command line ends: background, pipes, redirections, lists.
COMMAND_END = {"&", "&&", "||", "|", ";", ">", ">>", "<", "2>", "2>&1", "&>"}
#: Hydra's own flags that a documented command may use; True: the flag takes a value.
HYDRA_FLAGS = {
    "-m": False,
    "--multirun": False,
    "--resolve": False,
    "--cfg": True,
    "-c": True,
    "--package": True,
    "-p": True,
}
#: Names that no longer exist (the argparse era, the old metric keys, the old modules).
STALE = re.compile(
    r"test/acc\b|test/auroc|f1/macro|test/f1_ischemic|--sort\b|--format\b|--metrics\b|"
    r"--plot\b|--ascending|--descending|--out\b|python -m stroke\.(train|eval|predict|"
    r"export|cv)\b|stroke/(train|eval|predict|export|cv)\.py|stroke\.synth\.cli"
)


class Command(NamedTuple):
    """A `stroke-<name>` command line quoted in a page: where, which config, its overrides."""

    where: str
    config: str
    args: list[str]


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line number of the body's first line) of every fenced code block."""
    return [
        (m.group(1).lower(), m.group(2), text.count("\n", 0, m.start(2)) + 1)
        for m in FENCE.finditer(text)
    ]


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def logical_lines(body: str, first_line: int) -> list[tuple[int, str]]:
    """(line number, text) of a block's lines, backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", first_line
    for number, raw in enumerate(body.splitlines(), first_line):
        line = strip_comment(raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, (pending + line).strip()))
        pending = ""
    if pending:
        out.append((start, pending.strip()))
    return out


def command_of(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(config name, arguments) when the tokens run a stroke command, else None."""
    words = list(tokens)
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] in WRAPPERS or words[0] == "$"):
        words.pop(0)
    if not words:
        return None
    program = Path(words[0]).name
    args = words[1:]
    for i, word in enumerate(args):
        if word in COMMAND_END:
            args = args[:i]
            break
    if program.startswith("stroke-"):
        return program.removeprefix("stroke-"), args
    if re.fullmatch(r"python[\d.]*", program) and "-m" in args:
        module = args[args.index("-m") + 1]
        if module.startswith("stroke.cli."):
            return module.removeprefix("stroke.cli."), args[args.index("-m") + 2 :]
    if program == "make" and args[:1] == ["train"]:
        extra = [a.removeprefix("ARGS=") for a in args if a.startswith("ARGS=")]
        return "train", shlex.split(extra[0]) if extra else []
    return None


def quoted_commands(page: Path) -> list[Command]:
    """Every stroke command line in the page's shell code blocks."""
    found = []
    for language, body, first_line in fenced_blocks(page.read_text()):
        if language not in SHELL_BLOCKS:
            continue
        for number, line in logical_lines(body, first_line):
            if not line:
                continue
            command = command_of(shlex.split(line))
            if command:
                where = f"{page.relative_to(REPO)}:{number}"
                found.append(Command(where, *command))
    return found


ALL_COMMANDS = [command for page in PAGES for command in quoted_commands(page)]


def config_names() -> set[str]:
    """The commands' configs shipped in the package (conf/<name>.yaml)."""
    shipped = files(CONFIG_MODULE).iterdir()
    return {p.name.removesuffix(".yaml") for p in shipped if p.name.endswith(".yaml")}


def values_of(override_text: str) -> list[str]:
    """The override as single runs compose it: one override per value of a sweep.

    `hydra.sweeper.params.*` values stay whole, as the strings the search reads; an interval
    given on the command line (an Optuna range) composes as its start.
    """
    override = OverridesParser.create().parse_overrides([override_text])[0]
    if not override.is_sweep_override():
        return [override_text]
    key = override.get_key_element()
    if override.key_or_group.startswith("hydra.sweeper.params."):
        return [f"{key}='{override_text.split('=', 1)[1]}'"]
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [f"{key}={value.start}"]
    return [f"{key}={v}" for v in override.sweep_string_iterator()]


#: the commands that take a key positionally (stroke/cli/positional.py)
POSITIONAL = {"runs": "path", "cv": "path"}


def override_sets(command: Command) -> list[list[str]]:
    """The overrides to compose: every sweep at its first value, then each other option once.

    Hydra's flags are dropped. Only config groups (`model=a,b`, `hydra/launcher=x`) get their
    other values composed, one at a time: a dotted key's value cannot change what composes.
    """
    arguments = command.args
    if command.config in POSITIONAL:  # `stroke-runs <dir>`: as the command itself reads it
        arguments = rewrite_positional(arguments, POSITIONAL[command.config])
    values, args = [], iter(arguments)
    for arg in args:
        if arg.startswith("-"):
            assert arg in HYDRA_FLAGS, f"{command.where}: stroke-{command.config} {arg}: not Hydra"
            if HYDRA_FLAGS[arg]:
                next(args, None)
            continue
        values.append(values_of(arg))
    first = [v[0] for v in values]
    return [first] + [
        [*first[:i], other, *first[i + 1 :]]
        for i, v in enumerate(values)
        if "." not in v[0].split("=", 1)[0]
        for other in v[1:]
    ]


def relative_links(page: Path) -> list[str]:
    """Link targets of a page that are files of this repository (no URLs, no bare #anchors)."""
    text = FENCE.sub("", page.read_text())
    text = INLINE_CODE.sub("", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [
        t.split("#", 1)[0]
        for t in targets
        if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_readme_starts_with_the_two_make_commands():
    language, body, _ = fenced_blocks(README.read_text())[0]
    assert language in SHELL_BLOCKS
    assert body.strip() == FRONT_DOOR


def test_the_readme_is_a_front_door_not_a_manual():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; manuals go to docs/"


def test_the_pages_quote_enough_commands_to_check():
    assert len(ALL_COMMANDS) >= MIN_COMMANDS, [c.where for c in ALL_COMMANDS]
    assert {c.config for c in ALL_COMMANDS} >= config_names()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_uses_names_that_are_gone(page):
    stale = [
        f"{page.relative_to(REPO)}:{n}: {m.group(0)}"
        for n, line in enumerate(page.read_text().splitlines(), 1)
        for m in STALE.finditer(line)
    ]
    assert not stale, stale


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: f"{c.where}:stroke-{c.config}")
def test_every_quoted_command_composes(command):
    assert command.config in config_names(), (
        f"{command.where}: stroke-{command.config} has no config conf/{command.config}.yaml "
        "(a command the docs quote but the package does not ship, or a typo)"
    )
    GlobalHydra.instance().clear()
    with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
        for overrides in override_sets(command):
            cfg = compose(command.config, overrides=overrides, return_hydra_config=True)
            assert cfg is not None, overrides
