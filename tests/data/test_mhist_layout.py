import csv

import pytest

from ddlight.data import MHISTDataModule
from ddlight.data.mhist_layout import OFFICIAL_COUNTS, image_name, interleaved, write_mhist_layout


def test_official_counts_are_the_released_split():
    assert sum(OFFICIAL_COUNTS["train"]) == 2175 and sum(OFFICIAL_COUNTS["test"]) == 977
    assert OFFICIAL_COUNTS["train"] == (1545, 630)


def test_interleaving_keeps_each_class_count_and_fills_with_the_larger():
    order = interleaved(5, 2)
    assert [label for label, _ in order] == ["HP", "SSA", "HP", "SSA", "HP", "HP", "HP"]
    assert [k for label, k in order if label == "HP"] == [0, 1, 2, 3, 4]


def test_generated_layout_loads_through_the_data_module_with_its_class_balance(tmp_path):
    root = write_mhist_layout(tmp_path / "mhist", {"train": (5, 2), "test": (3, 2)}, size=32)
    with (root / "annotations.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["Image Name"] for r in rows] == [image_name(i) for i in range(12)]
    assert image_name(0) == "MHIST_aaa.png" and image_name(27) == "MHIST_abb.png"
    dm = MHISTDataModule(data_dir=str(root), image_size=32)
    dm.setup()
    assert dm.describe() == {"train": {"HP": 5, "SSA": 2}, "test": {"HP": 3, "SSA": 2}}
    assert dm.train_images.dtype.is_floating_point is False and dm.train_images.shape[1:] == (3, 32, 32)


def test_entry_point_writes_a_labelled_set_and_never_overwrites(tmp_path, capsys):
    from ddlight.data.mhist import GENERATED_MARKER
    from ddlight.data.mhist_layout import main

    main([str(tmp_path / "gen"), "--per-class", "3", "--size", "16"])
    out = capsys.readouterr().out
    assert out.startswith(f"wrote 12 generated 16x16 images and annotations.csv under {tmp_path / 'gen'}:")
    assert "meaningless" in out and f"--data.init_args.data_dir {tmp_path / 'gen'}" in out
    assert "not MHIST" in (tmp_path / "gen" / GENERATED_MARKER).read_text()
    dm = MHISTDataModule(data_dir=str(tmp_path / "gen"), image_size=16)
    with pytest.warns(UserWarning, match=r"gen holds a generated MHIST-shaped set .*meaningless"):
        dm.setup()
    assert dm.describe() == {"train": {"HP": 3, "SSA": 3}, "test": {"HP": 3, "SSA": 3}}
    with pytest.raises(SystemExit) as stop:  # a folder with files (e.g. the real MHIST) is left alone
        main([str(tmp_path / "gen")])
    assert stop.value.code == 2
    assert "gen exists and is not an empty folder; name a new one" in capsys.readouterr().err
