"""stroke-serve and 3-D segmenters: not served yet, refused with the command that works."""

from __future__ import annotations

from stroke.errors import ConfigError


def refuse_volume_segmenter(path, **options) -> None:
    """stroke-serve's page shows slices one card each; a 3-D segmenter needs the series
    viewer (issue 23), so its checkpoint is refused in one line rather than half-served."""
    raise ConfigError(
        f"seg_ckpt_path={path!r} is a 3-D segmenter, which stroke-serve does not show yet; "
        f"write its label volumes with stroke-predict ckpt_path={path} inputs=<scan or folder>"
    )
