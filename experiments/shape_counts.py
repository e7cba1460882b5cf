"""The shape of the package in figures (issue 20's table): modules over 400 lines, functions
with more than 12 parameters, `from stroke...` imports inside functions, task decisions
made by comparing a task's name as a string, and tuples (lists, sets) of metric names
written out in the code: a literal naming two or more metrics, or `(name, label)` pairs
of them, each one more place a new metric must be added to.

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

#: the metric names of every task, as the code spells them (optionally under a split)
METRIC_NAMES = frozenset(
    {"accuracy", "balanced_accuracy", "precision", "recall", "specificity", "sensitivity"}
    | {"npv", "f1", "roc_auc", "average_precision", "ece"}
    | {"dice", "iou", "lesion_sensitivity", "fp_lesions_per_image"}
)


def _metric_name(node: ast.expr) -> bool:
    """A string constant that is a metric name, `test/f1`, or a `(name, label)` pair."""
    if isinstance(node, ast.Tuple) and node.elts:
        node = node.elts[0]
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    return node.value.split("/", 1)[-1] in METRIC_NAMES


def counts(root: Path) -> dict[str, list]:
    labels = ("modules over 400 lines", "functions over 12 parameters")
    labels += ("in-function stroke imports", "string task decisions", "metric name tuples")
    found: dict[str, list] = {label: [] for label in labels}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        source = path.read_text()
        paired: set[int] = set()  # the (name, label) pairs of a counted tuple: not again
        if len(source.splitlines()) > 400:
            found["modules over 400 lines"].append(f"{name} ({len(source.splitlines())})")
        for node in ast.walk(ast.parse(source)):
            literal = isinstance(node, ast.Tuple | ast.List | ast.Set) and id(node) not in paired
            if literal and sum(_metric_name(e) for e in node.elts) >= 2:
                found["metric name tuples"].append(f"{name}:{node.lineno}")
                paired.update(id(e) for e in node.elts)
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
