"""The datamodule's settings: flat data.* keys sorted into typed groups, checked up front."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stroke.data import StrokeDataModule
from stroke.data.preprocessing import PREPROCESSING_FIELDS
from stroke.data.settings import DATA_KEYS, PREPROCESSING_KEYS, DataSettings
from stroke.data.sources import FolderSource
from stroke.errors import ConfigError


def test_every_key_of_the_base_data_config_has_one_group():
    """The keys users type (conf/data/_base.yaml) are exactly the settings' keys: a key added
    to the config without a group (or the other way round) fails here."""
    base = OmegaConf.load("conf/data/_base.yaml")
    assert set(base.keys()) == set(DATA_KEYS)
    assert len(DATA_KEYS) == len(set(DATA_KEYS))  # no key in two groups


def test_preprocessing_keys_derive_from_the_record():
    assert set(PREPROCESSING_KEYS) == set(PREPROCESSING_FIELDS) - {"dicom_windows"}


def test_flat_keys_land_in_their_groups():
    settings = DataSettings.from_keys(
        {"batch_size": 7, "fold": 2, "leakage": False, "cache": False, "image_size": 48}
    )
    assert settings.loading.batch_size == 7
    assert settings.splits.fold == 2
    assert settings.leakage.leakage == "off"  # YAML's bare `off`
    assert settings.cache.cache is False
    assert settings.preprocessing == {"image_size": 48}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"bach_size": 4}, r"data.bach_size is not a data setting: did you mean data.batch_size\?"),
        ({"batch_size": 0}, "data.batch_size=0: expected an integer >= 1"),
        ({"num_workers": -1}, "data.num_workers=-1: expected an integer >= 0 or 'auto'"),
        ({"val_fraction": 1.5}, r"data.val_fraction=1.5: expected a number in \[0, 1\)"),
        ({"fold_split": "train"}, r"data.fold_split='train': expected one of \['test', 'val'\]"),
        ({"sampler": "balanced"}, "data.sampler='balanced': expected one of"),
        ({"cache": "yes"}, "data.cache='yes': expected true or false"),
        ({"classes": "normal"}, "data.classes must be a list of class names"),
    ],
)
def test_a_bad_key_or_value_is_one_line_before_anything_is_read(keys, message):
    with pytest.raises(ConfigError, match=message):
        StrokeDataModule(FolderSource("/nowhere"), **keys)


def test_settings_built_in_code_are_used_as_given(tmp_path):
    settings = DataSettings.from_keys({"image_size": 32, "batch_size": 3, "cache": False})
    dm = StrokeDataModule(FolderSource(tmp_path), settings=settings)
    assert (dm.batch_size, dm.image_size, dm.cache) == (3, 32, False)
    with pytest.raises(ConfigError, match="not both"):
        StrokeDataModule(FolderSource(tmp_path), settings=settings, batch_size=4)
