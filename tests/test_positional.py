"""`stroke-runs <dir>` and `stroke-cv <dir>`: the folder positionally, as people type it."""

from __future__ import annotations

import pytest
from commands import run_main

from stroke.cli import cv as cv_cli
from stroke.cli import runs as runs_cli
from stroke.cli.positional import rewrite_positional
from stroke.errors import ConfigError


def test_a_bare_word_becomes_the_key_and_flags_keep_their_values():
    assert rewrite_positional(["outputs/x", "sort=test/f1"], "path") == [
        "path='outputs/x'",
        "sort=test/f1",
    ]
    # a path with a comma or an equals sign stays one value, not a sweep or a key
    assert rewrite_positional(["/a,b/c=d"], "path") == ["path='/a,b/c=d'"]
    assert rewrite_positional(["--cfg", "job", "path=x"], "path") == ["--cfg", "job", "path=x"]
    assert rewrite_positional(["--info", "defaults", "x"], "path") == [
        "--info",
        "defaults",
        "path='x'",
    ]
    with pytest.raises(ConfigError, match="2 bare words"):
        rewrite_positional(["a", "b"], "path")
    with pytest.raises(ConfigError, match="path given twice"):
        rewrite_positional(["a", "path=b"], "path")


@pytest.mark.parametrize("main", [runs_cli.main, cv_cli.main], ids=["stroke-runs", "stroke-cv"])
def test_the_folder_may_be_given_positionally(main, tmp_path, capsys):
    folder = tmp_path / "multiruns" / "2026-12-03_10-00-00"
    folder.mkdir(parents=True)
    bare = run_main(main, folder, capsys=capsys)
    keyed = run_main(main, f"path={folder}", capsys=capsys)
    # the same answer both ways (an empty folder: the command's own message, not Hydra's)
    assert bare == keyed
    assert bare[0] != 0 and str(folder) in bare[2]
    assert "cannot parse an override" not in bare[2] and "Traceback" not in bare[2]


def test_a_class_map_given_on_the_command_line_replaces_the_presets(tmp_path):
    from conftest import compose_config

    from stroke.cli.positional import rewrite_replacements

    given = "data.class_map={intraparenchymal: hemorrhage, normal: none}"
    overrides = ["experiment=head_ct_hemorrhage_cv", "data=folder", given]
    cfg = compose_config("train", rewrite_replacements(overrides, ("data.class_map",)))
    # the preset's own map (hemorrhagic, ischemic) is gone: the user's is the whole map
    assert dict(cfg.data.class_map) == {"intraparenchymal": "hemorrhage", "normal": "none"}
    cfg = compose_config(
        "train", rewrite_replacements(["data.class_map={a: b}"], ("data.class_map",))
    )
    assert dict(cfg.data.class_map) == {"a": "b"}
    assert rewrite_replacements(["data.class_map=null"], ("data.class_map",)) == [
        "data.class_map=null"
    ]
