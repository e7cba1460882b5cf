"""`stroke-eval` on a segmentation checkpoint: its data rebuilt, its report written."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from stroke.errors import ConfigError
from stroke.hardware import resolve_device
from stroke.tasks.segmentation.checkpoint import LoadedSegmenter, load_segmenter
from stroke.tasks.segmentation.report import evaluate_segmentation

DATAMODULE = "stroke.tasks.segmentation.LesionSegmentationDataModule"


def segmentation_data_config(data_cfg: DictConfig, segmenter: LoadedSegmenter) -> DictConfig:
    """The data config as a segmentation datamodule: a classification data group (e.g.
    `data=folder` on an external test set) gets the checkpoint's mask mapping."""
    data_cfg = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    with open_dict(data_cfg):
        if "masks" not in data_cfg:
            if not segmenter.masks:
                raise ConfigError(
                    f"checkpoint {segmenter.path} records no mask mapping; give data.masks "
                    "(lesion_classes, values, from_label) as in training"
                )
            data_cfg.masks = segmenter.masks
        data_cfg["_target_"] = DATAMODULE
    return data_cfg


def check_matches(segmenter: LoadedSegmenter, datamodule, where: str) -> None:
    """Fail, naming both sides, when data and checkpoint disagree on classes or channels."""
    ours = (segmenter.lesion_classes, segmenter.input_channels)
    theirs = (datamodule.lesion_classes, datamodule.input_channels)
    if ours != theirs:
        raise ConfigError(
            f"checkpoint {segmenter.path} segments {segmenter.lesion_classes} with "
            f"{segmenter.input_channels} input channels, but {where} gives lesion classes "
            f"{datamodule.lesion_classes} with {datamodule.input_channels}; evaluate it on "
            "data with the same data.masks and channels (data.in_chans per slice, "
            "data.context_slices)"
        )
    if segmenter.joint and segmenter.class_names != datamodule.class_names:
        raise ConfigError(
            f"checkpoint {segmenter.path}'s classification head was trained on classes "
            f"{segmenter.class_names}, but {where} gives {datamodule.class_names}"
        )


def evaluate_segmentation_checkpoint(
    cfg: DictConfig,
    paths: list[Path],
    data_cfg: DictConfig,
    origin: str,
    overrides: list[str],
) -> dict[str, object]:
    """Load the checkpoint safely, rebuild its data, predict the test split, write the report."""
    segmenter = load_segmenter(paths[0])
    datamodule = instantiate(segmentation_data_config(data_cfg, segmenter))
    datamodule.setup("test")
    check_matches(segmenter, datamodule, f"the data ({origin})")
    out_dir = Path(cfg.paths.output_dir)
    context = {
        "checkpoint": str(segmenter.path),
        "backbone": segmenter.description,
        "data": origin,
        "data source": repr(datamodule.source),
    }
    device = resolve_device(cfg.device)
    config = instantiate(cfg.evaluation)
    result = evaluate_segmentation(segmenter.net, datamodule, out_dir, config, device, context)
    metrics = result["image_level"]["metrics"]
    print(
        f"test: Dice {metrics['dice']['value']}, IoU {metrics['iou']['value']}, lesion "
        f"sensitivity {metrics['lesion_sensitivity']['value']}, FP lesions per image "
        f"{metrics['fp_lesions_per_image']['value']}"
    )
    print(f"evaluation directory: {out_dir}")
    return result
