"""stroke: a Lightning + Hydra framework for brain CT/MRI stroke classification."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

#: The repository root (this package is installed in editable mode from it).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Configs name paths relative to the project, not to the shell's working directory.
if not OmegaConf.has_resolver("stroke_root"):
    OmegaConf.register_new_resolver("stroke_root", lambda: str(PROJECT_ROOT))


def _auto_precision(accelerator: str = "auto") -> str:
    # imported on use: `import stroke` stays light for tools that never build a trainer
    from stroke.performance import auto_precision

    return auto_precision(accelerator)


# `precision: ${auto_precision:${trainer.accelerator}}`: bf16 on GPUs that support it, else fp32
if not OmegaConf.has_resolver("auto_precision"):
    OmegaConf.register_new_resolver("auto_precision", _auto_precision)


def _run_name() -> str:
    from stroke.runs.naming import current_run_name  # imported on use, as above

    return current_run_name()


# `version: ${stroke_run_name:}`: loggers list a run by the overrides that set it apart
if not OmegaConf.has_resolver("stroke_run_name"):
    OmegaConf.register_new_resolver("stroke_run_name", _run_name)
