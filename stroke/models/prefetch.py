"""Fetch timm's pretrained weights on a connected machine, for offline runs.

    python -m stroke.models.prefetch resnet18 efficientnet_b0 --dir weights

writes `weights/resnet18.safetensors` and `weights/efficientnet_b0.safetensors` (the
ImageNet weights timm downloads for `timm.create_model(name, pretrained=True)`, with their
own classifier). Copy the folder to the offline machine as `<stroke home>/weights` or
point `STROKE_WEIGHTS_DIR` at it: `model.backbone.pretrained=true` then reads the file
named after the backbone instead of downloading (stroke/models/factory.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stroke.errors import ConfigError
from stroke.models import custom


def prefetch(names: list[str], directory: Path) -> list[Path]:
    """Download each backbone's pretrained weights and save them as `<dir>/<name>.safetensors`."""
    import timm
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if name in custom.CUSTOM_MODELS or not timm.is_model(name):
            raise ConfigError(f"{name!r} is not a timm architecture with published weights")
        model = timm.create_model(name, pretrained=True)
        path = directory / f"{name}.safetensors"
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path))
        written.append(path)
        print(f"{name}: {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="timm backbone names, e.g. resnet18")
    parser.add_argument("--dir", default="weights", type=Path, help="where to write them")
    args = parser.parse_args(argv)
    try:
        prefetch(args.names, args.dir)
    except (ConfigError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
