"""Export a backbone to ONNX with a dynamic batch axis, and check it against PyTorch."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stroke.io import atomic_write_bytes

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
#: metadata_props key holding classes and preprocessing (JSON), so the .onnx file stands alone
METADATA_KEY = "stroke"


def export_onnx(
    net: nn.Module,
    path: str | Path,
    input_channels: int,
    image_size: int,
    metadata: Mapping[str, object] | None = None,
    opset: int = 18,
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> Path:
    """Write `net` (logits out) as ONNX; the batch axis is dynamic, the image size fixed.

    A network with several outputs (a segmenter's masks and class logits) names each.

    Uses torch's dynamo-based exporter, which handles every backbone we ship (the
    TorchScript exporter cannot export cnn_small's adaptive pooling at sizes where the
    pooled grid is not a divisor of the feature map).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    example = torch.randn(2, input_channels, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's own progress and deprecation chatter
        program = torch.onnx.export(
            net,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    import onnx

    # written beside the target and moved over it whole: an interrupted export leaves the
    # previous file (or none), never a truncated model
    staging = path.with_name(f".{path.name}.{os.getpid()}.export")
    try:
        program.save(str(staging))
        model = onnx.load(str(staging))
        if metadata:
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, json.dumps(dict(metadata))
        atomic_write_bytes(path, model.SerializeToString())
    finally:
        staging.unlink(missing_ok=True)
    return path


def read_onnx_metadata(path: str | Path) -> dict[str, object] | None:
    """The classes and preprocessing stored by export_onnx, or None."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    return None


def max_abs_difference(
    net: nn.Module, onnx_path: str | Path, input_channels: int, image_size: int, batch_size: int = 3
) -> float:
    """Largest |PyTorch - ONNX Runtime| output value on a seeded random batch (every output)."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, input_channels, image_size, image_size, generator=generator)
    with torch.no_grad():
        expected = net.eval()(images)
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple | list) else [expected])]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    return max(float(np.abs(e - a).max()) for e, a in zip(expected, actual, strict=True))
