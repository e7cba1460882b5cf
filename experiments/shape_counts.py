"""The shape of the package in figures (issue 20's table): modules over 400 lines, functions
with more than 12 parameters, `from stroke...` imports inside functions, and task decisions
made by comparing a task's name as a string.

    python experiments/shape_counts.py                  # this checkout's stroke/
    mkdir /tmp/before && git archive 6c8ce0b stroke | tar -x -C /tmp/before
    python experiments/shape_counts.py /tmp/before/stroke   # main before issue 20

Import cycles between sibling modules are counted by `lint-imports` (`make lint`).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

#: a task decided by its name: `x == "segmentation"`, `"segmentation" != x`, `in ("segmentation"`
STRING_DECISION = re.compile(
    r'[=!]= *"(segmentation|classification)"|"(segmentation|classification)" *[=!]='
    r'|in \("(segmentation|classification)"'
)


def counts(root: Path) -> dict[str, list]:
    labels = ("modules over 400 lines", "functions over 12 parameters")
    labels += ("in-function stroke imports", "string task decisions")
    found: dict[str, list] = {label: [] for label in labels}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        source = path.read_text()
        if len(source.splitlines()) > 400:
            found["modules over 400 lines"].append(f"{name} ({len(source.splitlines())})")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            params = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            params -= bool(args.args and args.args[0].arg in ("self", "cls"))
            if params > 12:
                found["functions over 12 parameters"].append(f"{name}:{node.name} ({params})")
            found["in-function stroke imports"] += [
                f"{name}:{sub.lineno}"
                for sub in ast.walk(node)
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("stroke")
            ]
        found["string task decisions"] += [
            f"{name}:{source[: m.start()].count(chr(10)) + 1}"
            for m in STRING_DECISION.finditer(source)
        ]
    return found


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "stroke"
    for label, items in counts(root).items():
        shown = ", ".join(items) if len(items) <= 6 else f"{', '.join(items[:6])}, ..."
        print(f"{label}: {len(items)}" + (f"  [{shown}]" if items else ""))


if __name__ == "__main__":
    main()
