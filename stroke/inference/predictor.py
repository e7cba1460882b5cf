"""Predict classes for image files with a PyTorch or an ONNX Runtime backend.

Every file gets a result: its probabilities, or the error that stopped it from being
read. One unreadable file never stops the others.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from stroke.data.context import stack_channels
from stroke.data.images import ImageLoader
from stroke.data.preprocessing import Preprocessing
from stroke.data.readers import searched_suffixes
from stroke.errors import ConfigError

_GLOB_CHARS = frozenset("*?[")


def resolve_inputs(inputs: str | Path | Sequence[str | Path], volumes: bool = False) -> list[Path]:
    """The files named by `inputs`: a file, a folder (images under it, recursively) or a glob.

    A list may mix all three. A name that matches nothing is an error, so a typo does
    not pass as "no images". Folders are searched for the suffixes of the registered formats
    (stroke.data.readers; files without a suffix, as PACS exports often name DICOM files,
    are read when named directly or by a glob); `volumes`: for NIfTI volumes too.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    searched = searched_suffixes(volumes)
    files: list[Path] = []
    for item in inputs:
        text = str(Path(str(item)).expanduser()) if not set(str(item)) & _GLOB_CHARS else str(item)
        path = Path(text)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.name.lower().endswith(searched)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif set(text) & _GLOB_CHARS:
            files.extend(
                Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()
            )
        else:
            raise ConfigError(
                f"inputs={str(item)!r} is neither a file, a folder nor a glob pattern"
            )
    if not files:
        raise ConfigError(
            f"inputs={[str(i) for i in inputs]} names no image files "
            f"(folders are searched for {', '.join(searched)})"
        )
    return files


@dataclass
class FilePrediction:
    """The outcome for one file: probabilities, or the error that prevented them."""

    path: Path
    probs: np.ndarray | None = None
    error: str = ""
    #: the letterboxed uint8 image (H x W x C), kept only when explanations are wanted
    image: np.ndarray | None = None
    #: the normalized model input (C x H x W), kept only when explanations are wanted
    tensor: np.ndarray | None = None


def preprocess_file(
    path: Path, preprocessing: Preprocessing, loader: ImageLoader | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One file as the model sees it: (letterboxed uint8 H x W x C image, normalised C x H x W).

    The one path from a file to the model's input at inference: `stroke-predict` and
    `stroke-serve` both call it, with the loader `preprocessing.file_loader()` (pass it
    to reuse one across files).
    """
    image = (loader or preprocessing.file_loader())(path)
    if preprocessing.context_slices:  # a lone slice: its own neighbours (a 1-slice volume)
        image = stack_channels([image] * (2 * preprocessing.context_slices + 1))
    return image, preprocessing.normalize(image)


def describe_error(err: Exception) -> str:
    """The text a file's error row shows: the exception's type and message."""
    return f"{type(err).__name__}: {err}"


class _ImageFiles(Dataset):
    """Reads and preprocesses each file as training did; a failure becomes an error string."""

    def __init__(self, paths: Sequence[Path], preprocessing: Preprocessing, keep_image: bool):
        self.paths = list(paths)
        self.preprocessing = preprocessing
        self.loader = preprocessing.file_loader()
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str, np.ndarray | None]:
        try:
            image, tensor = preprocess_file(self.paths[index], self.preprocessing, self.loader)
        except Exception as err:  # any failure to read is reported per file
            return index, None, describe_error(err), None
        return index, tensor, "", image if self.keep_image else None


def _keep_items(batch: list) -> list:
    return batch


class TorchBackend:
    """Logits from a PyTorch backbone."""

    name = "torch"

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


class OnnxBackend:
    """Logits from an exported ONNX model through ONNX Runtime."""

    name = "onnx"

    def __init__(self, onnx_path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(onnx_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"onnx_path={str(path)!r} does not exist; write it with "
                "`stroke-export ckpt_path=<checkpoint> format=onnx`"
            )
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32)})[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def class_probabilities(backend, batch: np.ndarray, flip_tta: bool) -> np.ndarray:
    """Softmax probabilities; with flip TTA the mean over the image and its left-right mirror.

    A left-right mirror is a plausible head (the brain is near-symmetric, lesions occur on
    either side), so averaging the two removes side-specific noise from the decision.
    """
    if not flip_tta:
        return _softmax(backend(batch))
    both = backend(np.concatenate([batch, batch[..., ::-1]], axis=0))
    n = len(batch)
    return (_softmax(both[:n]) + _softmax(both[n:])) / 2


def decide(probs: np.ndarray, threshold: float | None) -> int:
    """The argmax, or for a binary task with a threshold: positive when P(positive) >= it."""
    if threshold is None:
        return int(np.argmax(probs))
    return int(probs[1] >= threshold)


def predict_files(
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    backend,
    batch_size: int = 32,
    flip_tta: bool = False,
    num_workers: int = 0,
    keep_images: bool = False,
    progress: bool = True,
) -> Iterator[list[FilePrediction]]:
    """Yield the predictions batch by batch, in the order of `paths`."""
    dataset = _ImageFiles(paths, preprocessing, keep_images)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_items
    )
    with tqdm(total=len(dataset), desc="predict", unit="img", disable=not progress) as bar:
        for items in loader:
            results = []
            readable = [(i, t, img) for i, t, err, img in items if not err]
            probs = (
                class_probabilities(backend, np.stack([t for _, t, _ in readable]), flip_tta)
                if readable
                else np.zeros((0, 0))
            )
            by_index = {i: (p, t, img) for (i, t, img), p in zip(readable, probs, strict=True)}
            for index, _, error, _ in items:
                if error:
                    results.append(FilePrediction(dataset.paths[index], error=error))
                    continue
                p, tensor, image = by_index[index]
                results.append(
                    FilePrediction(
                        dataset.paths[index],
                        probs=p,
                        image=image,
                        tensor=tensor if keep_images else None,
                    )
                )
            bar.update(len(items))
            yield results
