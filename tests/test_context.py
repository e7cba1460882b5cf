"""2.5D input (`data.context_slices`): neighbours in slice order, the edge slice repeated at
a volume's ends, channels assembled by the dataset and recorded in the Preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from stroke.data import FolderSource, Sample, StrokeDataModule
from stroke.data.context import neighbour_indices
from stroke.data.preprocessing import Preprocessing
from stroke.data.samples import label_set, label_set_string
from stroke.errors import ConfigError, DatasetError


def test_neighbours_follow_slice_order_and_repeat_the_edges():
    # a 4-slice volume listed out of order, a 1-slice volume, another file's slices
    samples = [
        Sample(Path("a.nii"), "x", "p1", slice_index=2),
        Sample(Path("a.nii"), "x", "p1", slice_index=0),
        Sample(Path("b.nii"), "x", "p2", slice_index=5),
        Sample(Path("a.nii"), "x", "p1", slice_index=3),
        Sample(Path("a.nii"), "x", "p1", slice_index=1),
    ]
    got = neighbour_indices(samples, 1)
    slices = [[samples[j].slice_index for j in row] for row in got]
    assert slices == [[1, 2, 3], [0, 0, 1], [5, 5, 5], [2, 3, 3], [0, 1, 2]]
    assert all(samples[j].path == samples[i].path for i, row in enumerate(got) for j in row)
    wide = neighbour_indices(samples, 2)
    assert [samples[j].slice_index for j in wide[1]] == [0, 0, 0, 1, 2]
    assert neighbour_indices(samples, 0) == [[i] for i in range(len(samples))]


def test_a_slice_number_regex_orders_files_of_a_patient_folder():
    names = ["P1_s10.png", "P1_s2.png", "P1_s1.png"]  # by name s10 < s2: the regex fixes it
    samples = [Sample(Path("scans") / n, "x", "P1") for n in names]
    got = neighbour_indices(samples, 1, r"_s(\d+)\.")
    assert [[samples[j].path.name for j in row] for row in got][1] == [
        "P1_s1.png", "P1_s2.png", "P1_s10.png",
    ]  # fmt: skip
    with pytest.raises(DatasetError, match="finds no slice number"):
        neighbour_indices([Sample(Path("x.png"), "x", "P")], 1, r"_s(\d+)\.")
    with pytest.raises(ConfigError, match="needs a group"):
        neighbour_indices(samples, 1, r"_s\d+")


def test_the_dataset_stacks_the_neighbours_as_channels(tmp_path):
    # 2 patients x 3 slices; slice k of patient p is filled with 10 * (p + 1) + k
    for label, patient in (("normal", 0), ("hemorrhagic", 1), ("normal", 2), ("hemorrhagic", 3)):
        for k in range(3):
            value = 10 * (patient + 1) + k
            write_image(
                tmp_path / label / f"P{patient}_s{k}.png", np.full((16, 16), value, np.uint8)
            )
    dm = StrokeDataModule(
        FolderSource(tmp_path, patient_regex=r"^(P\d+)_"), image_size=16, in_chans=1,
        num_workers=0, cache=False, leakage="off", val_fraction=0.0, test_fraction=0.0,
        mean=0.0, std=1.0, context_slices=1, slice_regex=r"_s(\d+)\.",
    )  # fmt: skip
    dm.setup("fit")
    assert dm.model_arguments()["input_channels"] == 3
    dataset = dm.datasets["train"]
    for index, sample in enumerate(dataset.samples):
        tensor, _ = dataset[index]
        patient, k = int(sample.path.stem[1]), int(sample.path.stem[-1])
        expected = [10 * (patient + 1) + min(max(k + d, 0), 2) for d in (-1, 0, 1)]
        np.testing.assert_allclose(tensor[:, 8, 8].numpy() * 255, expected, atol=1e-3)
    record = dm.state_dict()
    assert record["context_slices"] == 1
    restored = Preprocessing.from_record(record)
    assert restored.channels == 3 and restored.context_slices == 1


def test_slices_of_a_series_are_ordered_by_their_position_not_their_listing():
    """One file per slice (RSNA's flat folder): the series, and the position along the slice
    normal, say which slices neighbour each other, whatever the listing order."""
    positions = [30.0, -5.0, 12.5, 0.0]  # listed out of order; -5 < 0 < 12.5 < 30
    samples = [
        Sample(Path(f"/flat/ID_{i}.dcm"), "none", "P1", series_id="S1", slice_position=z)
        for i, z in enumerate(positions)
    ] + [Sample(Path("/flat/ID_9.dcm"), "none", "P1", series_id="S2", slice_position=0.0)]
    neighbours = neighbour_indices(samples, 1)
    assert neighbours[1] == [1, 1, 3]  # the lowest slice: itself repeated below
    assert neighbours[3] == [1, 3, 2]
    assert neighbours[0] == [2, 0, 0]  # the highest
    assert neighbours[4] == [4, 4, 4]  # another series: alone


def test_a_label_set_is_one_sorted_string():
    assert label_set_string(["subdural", "epidural", "subdural"]) == "epidural|subdural"
    assert label_set_string([]) == label_set_string(["none"]) == "none"
    assert label_set("epidural|subdural") == {"epidural", "subdural"}
    assert label_set("none") == frozenset()
