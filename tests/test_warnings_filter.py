"""Third-party chatter is hidden; our own warnings and log messages still show."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from stroke.warnings_filter import quiet_third_party_warnings


def shown(message: str, category: type[Warning], module: str) -> bool:
    """Whether a warning raised from `module` gets through the filters in force."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(message, category, f"{module}.py", 1, module=module)
    return bool(caught)


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", [])
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # everything shows unless a filter of ours hides it
        quiet_third_party_warnings()
        quiet_third_party_warnings()  # a second call changes nothing
        yield


def test_known_third_party_warnings_are_hidden(quiet):
    lightning = "lightning.pytorch.trainer.connectors.data_connector"
    assert not shown("The 'train_dataloader' does not have many workers", UserWarning, lightning)
    assert not shown("No positive samples in targets, ...", UserWarning, "torchmetrics.roc")
    assert not shown("`LeafSpec` is deprecated", FutureWarning, "lightning.pytorch.utilities")
    assert not shown("old API", DeprecationWarning, "timm.models._builder")
    assert not shown("old API", DeprecationWarning, "torch")


def test_our_warnings_and_other_third_party_ones_still_show(quiet):
    assert shown("class weights and a weighted sampler together", UserWarning, "stroke.train")
    assert shown("a deprecated call of ours", DeprecationWarning, "stroke.data.cache")
    assert shown("a deprecated call of ours", FutureWarning, "stroke.models")
    assert shown("something new", UserWarning, "lightning.pytorch.trainer")  # not a known one
    assert shown("old API", DeprecationWarning, "torchaudio_clone")  # not a listed package


def test_lightning_advertisements_are_dropped_but_log_messages_are_not(quiet, caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: install more")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
        logging.getLogger("stroke.train").warning("💡 Tip: ours would still show")
    assert [r.getMessage() for r in caplog.records] == [
        "GPU available: False",
        "💡 Tip: ours would still show",
    ]
