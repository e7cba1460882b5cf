"""`stroke-eval` on a multi-label checkpoint: its data rebuilt with the checkpoint's
preprocessing and labels, val and test predicted, the slice- and series-level report."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from stroke.errors import ConfigError
from stroke.hardware import resolve_device
from stroke.inference.consistency import align_preprocessing, check_windows
from stroke.tasks.multilabel.checkpoint import LoadedMultiLabel, load_multilabel
from stroke.tasks.multilabel.report import evaluate_and_report

DATAMODULE = "stroke.tasks.multilabel.MultiLabelDataModule"


def multilabel_data_config(data_cfg: DictConfig, model: LoadedMultiLabel) -> DictConfig:
    """The data config as a multi-label datamodule over the checkpoint's labels."""
    data_cfg = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    any_label = model.settings.get("any_label")
    labels = [c for c in model.class_names if c != any_label]
    with open_dict(data_cfg):
        if data_cfg.get("labels") not in (None, labels):
            raise ConfigError(
                f"data.labels={list(data_cfg.labels)} differ from the checkpoint's {labels}"
            )
        data_cfg.labels, data_cfg.any_label = labels, any_label
        data_cfg["_target_"] = DATAMODULE
    return data_cfg


def evaluate_multilabel(
    cfg: DictConfig, paths: list[Path], data_cfg: DictConfig, origin: str, overrides: list[str]
) -> dict[str, object]:
    """Load the checkpoint safely, rebuild its data, write the report."""
    model = load_multilabel(paths[0])
    data_cfg, preprocessing = align_preprocessing(data_cfg, model.preprocessing, overrides)
    datamodule = instantiate(multilabel_data_config(data_cfg, model))
    datamodule.setup("test")
    check_windows(datamodule.preprocessing, model.preprocessing, overrides)
    if datamodule.input_channels != model.input_channels:
        raise ConfigError(
            f"checkpoint {model.path} takes {model.input_channels} input channels, but the "
            f"data ({origin}) gives {datamodule.input_channels} (data.in_chans per slice, "
            "data.context_slices)"
        )
    out_dir = Path(cfg.paths.output_dir)
    context = {
        "checkpoint": str(model.path),
        "backbone": model.description,
        "data": origin,
        "preprocessing": preprocessing,
        "data source": repr(datamodule.source),
    }
    result = evaluate_and_report(
        model.net, datamodule, out_dir, instantiate(cfg.evaluation),
        resolve_device(cfg.device), context, model.settings,
    )  # fmt: skip
    slices, series = result["slice_level"], result["series_level"]["max"]
    print(
        f"test: weighted log loss {slices['weighted_log_loss']['value']}, macro ROC AUC "
        f"{slices['roc_auc']['value']} (slices), series ROC AUC {series['roc_auc']['value']}"
    )
    print(f"evaluation directory: {out_dir}")
    return result
