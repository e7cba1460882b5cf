"""A run's `metrics.json`: its metrics, and what in them is undefined or suspicious.

An undefined metric (the recall or ROC AUC of a class a split has no image of) is null,
never TorchMetrics' 0 or a perfect 1, and `undefined_metrics` says why; `data_warnings`
repeats what the data audit found (files left out, a split missing a class).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("stroke.train")


def run_summary(
    cfg, trainer, model, datamodule, metrics: Mapping[str, float], started: float, best: str
) -> dict[str, Any]:
    """What metrics.json holds for a finished run (the caller writes it)."""
    undefined = {
        k: getattr(model, "undefined_metrics", {}).get(k, "not a number")
        for k, v in metrics.items()
        if math.isnan(v)
    }
    if undefined:
        shown = "; ".join(f"{k}: {why}" for k, why in list(undefined.items())[:4])
        more = f" (and {len(undefined) - 4} more)" if len(undefined) > 4 else ""
        log.warning("undefined, null in metrics.json: %s%s", shown, more)
    return {
        "metrics": {k: (None if math.isnan(v) else v) for k, v in metrics.items()},
        "undefined_metrics": undefined,
        "data_warnings": list(getattr(datamodule, "data_warnings", [])),
        "best_model_path": best or None,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.time() - started, 2),
        "classes": datamodule.class_names,
        "fold": cfg.data.get("fold"),
        "folds": cfg.data.get("folds") if cfg.data.get("fold") is not None else None,
        "eval_dir": None,
    }
