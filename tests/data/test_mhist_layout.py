import csv

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
