"""`stroke-serve ckpt_path=...`: a web page and an HTTP API for a trained model.

The model loads once; uvicorn serves the FastAPI app on `host:port` (127.0.0.1 by default)
until Ctrl-C. See docs/serving.md.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from stroke.cli.errors import command
from stroke.config import CONFIG_PATH
from stroke.errors import ConfigError, StrokeError
from stroke.hardware import resolve_device
from stroke.parameters import SERVE, check
from stroke.runs.checkpoints import checkpoint_paths
from stroke.serve.app import create_app
from stroke.serve.series import check_aggregation
from stroke.serve.settings import TOKEN_ENV, ServeSettings
from stroke.tasks.registry import task_of_checkpoints
from stroke.warnings_filter import quiet_third_party_warnings

log = logging.getLogger("stroke.serve")


def build_app(cfg: DictConfig):
    """The application a config describes, with its settings (model loaded, worker not started)."""
    settings: ServeSettings = instantiate(cfg.serve)
    aggregation = check_aggregation(cfg.patient_aggregation)
    model = served(
        cfg.ckpt_path,
        "ckpt_path",
        device=resolve_device(cfg.device),
        threshold=cfg.threshold,
        eval_metrics=cfg.eval_metrics,
        tta=cfg.tta,
        target_layer=cfg.target_layer,
    )
    segmenter = served(cfg.seg_ckpt_path, "seg_ckpt_path", device=str(resolve_device(cfg.device)))
    return create_app(model, settings, segmenter, aggregation), model, settings


def served(path: str | None, key: str, **options):
    """What the page holds for checkpoint `path` given as `key`: its task's serve part (the
    registry says which key takes which task's checkpoints); None without a path."""
    if not path and key != "ckpt_path":
        return None
    try:
        # a checkpoint, a list of them or a cross-validation multirun folder (an ensemble)
        paths = checkpoint_paths(path) if path else [Path("")]
        task = task_of_checkpoints(paths)
    except StrokeError as err:  # the checkpoint's messages name ckpt_path=; here it is `key`
        raise type(err)(str(err).replace("ckpt_path=", f"{key}=", 1)) from None
    if task.serve_key != key:
        raise ConfigError(
            f"{key}={path!r} is a {task.name} checkpoint; stroke-serve takes it as "
            f"{task.serve_key}="
        )
    return task.serve(path, **options)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _announce(cfg: DictConfig, model, settings: ServeSettings) -> None:
    card = model.card()
    log.info(
        "model %s, classes %s, %d px, checkpoint sha256 %s; decision: %s",
        card["name"],
        card["classes"],
        card["input_size"],
        model.checkpoint_sha256[:16],
        model.rule.source,
    )
    url = f"http://{cfg.host}:{cfg.port}/"
    if settings.token_drawn:  # printed, not logged: only this terminal sees it
        print(f"stroke-serve: open {url}?token={settings.token}")
    elif settings.token:
        print(f"stroke-serve: open {url}?token=... (the token of serve.token or ${TOKEN_ENV})")
    else:
        print(f"stroke-serve: open {url}")
    if not _is_loopback(cfg.host) and not settings.token:
        log.warning(
            "host=%s without a token: anyone who can reach this machine can use the model; "
            "set serve.token=auto or $%s",
            cfg.host,
            TOKEN_ENV,
        )


@command
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="serve")
def main(cfg: DictConfig) -> None:
    """Entry point of `stroke-serve`."""
    check(cfg, SERVE)
    quiet_third_party_warnings()
    import uvicorn

    app, model, settings = build_app(cfg)
    _announce(cfg, model, settings)
    # log_config=None keeps Hydra's logging (console and the run's serve.log); uvicorn's
    # access log would write query strings, which may hold the token: RequestContext logs
    # each request without them
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_config=None, access_log=False)


if __name__ == "__main__":
    main()
