"""MHISTDataModule on a generated look-alike of the official layout (the real set is not redistributable)."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pytest
import torch

from ddlight.data import MHISTDataModule
from tests.helpers.mhist import HEADER, make_mhist_fixture

N_SSA_COL = HEADER[2]


def read_rows(root: Path) -> list[dict[str, str]]:
    with (root / "annotations.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(root: Path, rows: list[dict[str, str]], header: tuple[str, ...] | list[str] = HEADER) -> None:
    with (root / "annotations.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def full_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mhist_fixture(tmp_path_factory.mktemp("mhist224"), n_train=12, n_test=6, size=224)


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    """Small images: the error tests only need the layout, not faithful resolution."""
    return make_mhist_fixture(tmp_path / "mhist", n_train=6, n_test=4, size=16)


def load(root: Path, **kw) -> MHISTDataModule:
    dm = MHISTDataModule(data_dir=str(root), **kw)
    dm.setup()
    return dm


def test_loads_official_layout(full_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ddlight"):
        dm = load(full_root)
    assert dm.train_images.shape == (12, 3, 224, 224) and dm.train_images.dtype == torch.uint8
    assert dm.test_images.shape == (6, 3, 224, 224) and dm.test_images.dtype == torch.uint8
    assert dm.train_labels.dtype == torch.int64
    # Fixture alternates HP, SSA, ... in file order; HP must be 0 and SSA 1 whatever the order.
    assert dm.train_labels.tolist() == [0, 1] * 6
    assert dm.describe() == {"train": {"HP": 6, "SSA": 6}, "test": {"HP": 3, "SSA": 3}}
    assert dm.image_size == (224, 224)
    assert dm.class_names == ("HP", "SSA") and dm.num_classes == 2 and dm.channels == 3
    assert "'HP': 6" in caplog.text and "'SSA': 6" in caplog.text
    assert dm.hparams.image_size == 224 and dm.hparams.min_agreement == 0


def test_resize_at_load_time(full_root: Path) -> None:
    dm = load(full_root, image_size=64)
    assert dm.train_images.shape == (12, 3, 64, 64) and dm.train_images.dtype == torch.uint8
    assert dm.test_images.shape == (6, 3, 64, 64)
    # Antialiased downsampling keeps the per-image mean close to the full-resolution one.
    full = load(full_root)
    diff = (dm.train_images.float().mean((1, 2, 3)) - full.train_images.float().mean((1, 2, 3))).abs()
    assert diff.max() < 3.0


def test_min_agreement_filter(full_root: Path) -> None:
    rows = read_rows(full_root)

    def agreement(r: dict[str, str]) -> int:
        n = int(r[N_SSA_COL])
        return n if r["Majority Vote Label"] == "SSA" else 7 - n

    expect = {p: sum(1 for r in rows if r["Partition"] == p and agreement(r) >= 6) for p in ("train", "test")}
    assert 0 < expect["train"] < 12
    dm = load(full_root, image_size=16, min_agreement=6)
    assert len(dm.train_labels) == expect["train"] and len(dm.test_labels) == expect["test"]
    # 4 is implied by a 7-annotator majority, so it filters nothing.
    assert len(load(full_root, image_size=16, min_agreement=4).train_labels) == 12


def test_min_agreement_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"min_agreement must be in 0\.\.7, got 8"):
        MHISTDataModule(min_agreement=8)


def test_dataloader_batches_are_normalised_float(full_root: Path) -> None:
    dm = MHISTDataModule(data_dir=str(full_root), image_size=32, batch_size=5, eval_batch_size=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (5,)
    # ImageNet normalisation maps [0, 255] to roughly [-2.2, 2.7].
    assert x.min() >= -2.2 and x.max() <= 2.7 and x.min() < 0
    xt, yt = next(iter(dm.test_dataloader()))
    assert xt.shape == (4, 3, 32, 32) and yt.dtype == torch.int64
    xe, ye = next(iter(dm.episodes(2)))
    assert xe.shape == (4, 3, 32, 32) and ye.tolist() == [0, 0, 1, 1]


# --- bad input: each error names the file, the CSV line where one applies, and what was expected ---


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data_dir not found: .*nowhere.*annotations\.csv"):
        load(tmp_path / "nowhere")


def test_missing_annotations(small_root: Path) -> None:
    (small_root / "annotations.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations file not found: .*annotations\.csv.*Expected"):
        load(small_root)


def test_missing_column(small_root: Path) -> None:
    rows = read_rows(small_root)
    write_rows(small_root, rows, header=[h for h in HEADER if h != "Partition"])
    with pytest.raises(
        ValueError, match=r"annotations\.csv: missing column\(s\) \['Partition'\]; found columns"
    ):
        load(small_root)


def test_unknown_label(small_root: Path) -> None:
    rows = read_rows(small_root)
    rows[2]["Majority Vote Label"] = "TA"
    write_rows(small_root, rows)
    # rows[2] is the third data row, i.e. CSV line 4 after the header.
    with pytest.raises(ValueError, match=r"annotations\.csv, line 4: .*'TA'; allowed: HP, SSA"):
        load(small_root)


def test_unknown_partition(small_root: Path) -> None:
    rows = read_rows(small_root)
    rows[0]["Partition"] = "val"
    write_rows(small_root, rows)
    with pytest.raises(ValueError, match=r"annotations\.csv, line 2: .*'val'; allowed: train, test"):
        load(small_root)


def test_non_integer_annotator_count(small_root: Path) -> None:
    rows = read_rows(small_root)
    rows[4][N_SSA_COL] = "five"
    write_rows(small_root, rows)
    with pytest.raises(
        ValueError, match=r"annotations\.csv, line 6: .*must be an integer 0\.\.7, got 'five'"
    ):
        load(small_root)


def test_missing_image(small_root: Path) -> None:
    name = read_rows(small_root)[1]["Image Name"]
    (small_root / "images" / name).unlink()
    with pytest.raises(
        FileNotFoundError,
        match=rf"image not found: .*{re.escape(name)} \(listed at .*annotations\.csv, line 3\)",
    ):
        load(small_root)


def test_corrupt_image(small_root: Path) -> None:
    name = read_rows(small_root)[-1]["Image Name"]
    (small_root / "images" / name).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(
        ValueError, match=rf"{re.escape(name)} \(listed at .*line 11\) is unreadable or corrupt"
    ):
        load(small_root)


def test_truncated_image(small_root: Path) -> None:
    path = small_root / "images" / read_rows(small_root)[0]["Image Name"]
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"line 2\) is unreadable or corrupt"):
        load(small_root)


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_split(small_root: Path, split: str) -> None:
    write_rows(small_root, [r for r in read_rows(small_root) if r["Partition"] != split])
    with pytest.raises(ValueError, match=rf"annotations\.csv: no rows with 'Partition' == '{split}'"):
        load(small_root)
