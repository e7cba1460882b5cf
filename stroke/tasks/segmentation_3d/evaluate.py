"""`stroke-eval` on 3-D segmentation checkpoints (one, or a fold ensemble): the data rebuilt
with the checkpoint's plan, the report written."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from stroke.errors import ConfigError
from stroke.hardware import resolve_device
from stroke.tasks.segmentation_3d.checkpoint import LoadedVolumeSegmenter, load_volume_segmenter
from stroke.tasks.segmentation_3d.report import evaluate_volumes

DATAMODULE = "stroke.tasks.segmentation_3d.VolumeSegmentationDataModule"


def check_members(models: list[LoadedVolumeSegmenter]) -> None:
    """Members of an ensemble must agree on classes and plan (their probabilities are averaged)."""
    first = models[0]
    for other in models[1:]:
        if other.lesion_classes != first.lesion_classes or other.plan != first.plan:
            raise ConfigError(
                f"checkpoints {first.path} and {other.path} differ in lesion classes or volume "
                "plan; an ensemble averages members trained on the same plan (data.plan=<file>)"
            )


def evaluate_volume_checkpoints(
    cfg: DictConfig, paths: list[Path], data_cfg: DictConfig, origin: str, overrides: list[str]
) -> dict[str, object]:
    """Load the checkpoint(s) safely, rebuild the data with their plan, write the report."""
    models = [load_volume_segmenter(p) for p in paths]
    check_members(models)
    first = models[0]
    data_cfg = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    with open_dict(data_cfg):
        data_cfg["_target_"] = DATAMODULE
        data_cfg["lesion_classes"] = first.lesion_classes
        data_cfg["plan_overrides"] = {}
    # the checkpoint's plan, not one measured anew on this data
    datamodule = instantiate(data_cfg, plan=first.plan)
    datamodule.setup("test")
    hparams = {"sw_overlap": first.sw_overlap, "sw_batch_size": first.sw_batch_size}
    context = {
        "checkpoint": ", ".join(str(m.path) for m in models),
        "model": first.description + (f", ensemble of {len(models)}" if len(models) > 1 else ""),
        "data": origin,
        "data source": repr(datamodule.source),
    }
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.paths.output_dir)
    result = evaluate_volumes(
        [m.net for m in models], datamodule, out_dir, instantiate(cfg.evaluation), device,
        context, hparams,
    )  # fmt: skip
    level = result["volume_level"]
    key = result["headline"]
    dice, f1 = level[f"dice/{key}"]["value"], level[f"lesion_f1/{key}"]["value"]
    error = level[f"absolute_volume_difference_ml/{key}"]["value"]
    print(f"test: Dice {dice}, lesion F1 {f1}, absolute volume difference {error} mL")
    print(f"evaluation directory: {out_dir}")
    return result
