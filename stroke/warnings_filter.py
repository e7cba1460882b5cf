"""Known-harmless third-party warnings kept off the console; ours still show.

Every run printed the same notices from the libraries it uses, none of which asked anything
of the person running it, so the one warning that did (ours) was lost among them. Python's
own `-W` option turns this off: with any `-W`/`PYTHONWARNINGS` given, nothing is filtered.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

#: Messages (regular expressions, matched from the start) that ask nothing of our runs.
HARMLESS_MESSAGES = (
    # Lightning: workers are set per machine by data.num_workers (few cores, or cached data)
    r".*does not have many workers",
    # Lightning: short (debug, tiny) runs have fewer batches than the logging interval
    r".*is smaller than the logging interval",
    # torchmetrics: a class absent from a batch or split; the evaluation report itself says
    # which metrics are undefined
    r".*No positive samples",
    r".*No negative samples",
    # MONAI: the optional GPU DICOM decoder (nvImageCodec) is absent; pydicom decodes instead
    r".*nvImageCodec",
    # MONAI: a scan without a lesion gives only background patches (the sampler says so)
    r"Num foregrounds 0",
)

#: Packages whose own deprecation notices are for their maintainers, not for us: a
#: deprecated call in our code is reported at our line, so it still shows.
QUIET_DEPRECATIONS_FROM = (
    "albumentations",
    "hydra",
    "lightning",
    "lightning_fabric",
    "lightning_utilities",
    "monai",
    "mlflow",
    "omegaconf",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "optuna",
    "pytorch_lightning",
    "tensorboard",
    "timm",
    "torch",
    "torchmetrics",
    "torchvision",
)

#: Lightning's loggers of start-up notices; its advertisements ("💡 Tip: ...") are dropped.
_LIGHTNING_NOTICE_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


def quiet_third_party_warnings() -> None:
    """Hide the known-harmless warnings and notices of third-party libraries.

    Called first in every entry point's main; calling it again changes nothing.
    """
    if sys.warnoptions:  # `python -W ...`: the user chose what to see
        return
    for message in HARMLESS_MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    packages = "|".join(re.escape(name) for name in QUIET_DEPRECATIONS_FROM)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=rf"({packages})(\.|$)")
    for name in _LIGHTNING_NOTICE_LOGGERS:
        logging.getLogger(name).addFilter(_not_an_advertisement)
    # MONAI logs (not warns) the same nvImageCodec notice when its DICOM plugin loads
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


def _not_an_advertisement(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip:")
