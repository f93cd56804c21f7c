"""Tiny-ImageNet's official tree and an ImageFolder, generated tiny, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ddlight.data import DatasetFileError, ImageFolderDataModule, TinyImageNetDataModule
from tests.helpers.datasets import tiny_wnids, write_image_folder, write_tiny_imagenet


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_imagenet(tmp_path_factory.mktemp("tiny"))


def test_tiny_imagenet_layout(tiny_root):
    dm = TinyImageNetDataModule(data_dir=str(tiny_root))
    dm.setup()
    assert dm.train_images.shape == (200, 3, 64, 64) and dm.train_images.dtype == torch.uint8
    assert dm.test_images.shape == (200, 3, 64, 64)  # val serves as test
    assert dm.train_labels.tolist() == list(range(200)) and dm.test_labels.tolist() == list(range(200))
    assert dm.class_names[:2] == ("thing 0", "thing 1")  # words.txt, first synonym
    assert dm.shape_args() == {"channel": 3, "num_classes": 200, "im_size": 64}
    # JPEG is lossy, but class brightness 20 + 20 * (k % 10) + noise [0, 40) survives on average.
    means = dm.test_images.float().mean((1, 2, 3))
    assert torch.allclose(means[:10], 20 + 20 * torch.arange(10).float() + 19.5, atol=3)


def _copy_tree(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst / "tiny-imagenet-200"


def test_tiny_unknown_wnid_names_the_line(tiny_root, tmp_path):
    base = _copy_tree(tiny_root, tmp_path / "t")
    ann = base / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    lines[4] = lines[4].replace(tiny_wnids()[4], "n99999999")
    ann.write_text("\n".join(lines))
    with pytest.raises(DatasetFileError, match=r"val_annotations.txt, line 5: wnid 'n99999999' is not one"):
        TinyImageNetDataModule(data_dir=str(tmp_path / "t")).setup()


def test_tiny_wrong_size_and_mode_name_the_file(tiny_root, tmp_path):
    base = _copy_tree(tiny_root, tmp_path / "t")
    img = next((base / "train" / tiny_wnids()[3] / "images").glob("*.JPEG"))
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(img, format="JPEG")
    with pytest.raises(DatasetFileError, match=rf"{img.name}: image of 64x32 pixels; expected 64x64"):
        TinyImageNetDataModule(data_dir=str(tmp_path / "t")).setup()
    Image.fromarray(np.zeros((64, 64, 4), np.uint8), "RGBA").save(img, format="PNG")
    with pytest.raises(DatasetFileError, match=rf"{img.name}: image mode 'RGBA'; expected 8-bit"):
        TinyImageNetDataModule(data_dir=str(tmp_path / "t")).setup()


def test_tiny_missing_split_and_empty_class(tiny_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200/wnids.txt not found"):
        TinyImageNetDataModule(data_dir=str(tmp_path)).setup()
    base = _copy_tree(tiny_root, tmp_path / "t")
    for f in (base / "train" / tiny_wnids()[7] / "images").iterdir():
        f.unlink()
    with pytest.raises(DatasetFileError, match=rf"no \*.JPEG in .*{tiny_wnids()[7]}/images"):
        TinyImageNetDataModule(data_dir=str(tmp_path / "t")).setup()
    (base / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt not found"):
        TinyImageNetDataModule(data_dir=str(tmp_path / "t")).load_split("test")


def test_image_folder_resizes_once_and_computes_stats(tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=4)
    dm = ImageFolderDataModule(root=str(root), im_size=8)
    assert dm.num_classes == 3 and dm.class_names == ("cat", "dog", "fox") and dm.name == "pets"
    assert dm.shape_args() == {"channel": 3, "num_classes": 3, "im_size": 8}
    dm.setup()
    assert dm.train_images.shape == (12, 3, 8, 8) and dm.train_images.dtype == torch.uint8
    assert dm.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    x = dm.train_images.double() / 255
    want_mean = x.mean((0, 2, 3))
    want_std = ((x - want_mean.view(1, 3, 1, 1)) ** 2).mean((0, 2, 3)).sqrt()
    assert np.allclose(dm.mean, want_mean.tolist()) and np.allclose(dm.std, want_std.tolist())
    batch, _ = next(iter(dm.train_dataloader()))
    assert abs(float(batch.mean())) < 0.5  # normalised by its own statistics
    grey = ImageFolderDataModule(root=str(root), im_size=8, channels=1, name="Pets-Grey")
    grey.setup()
    assert grey.train_images.shape == (12, 1, 8, 8) and grey.name == "pets-grey" and len(grey.mean) == 1


def test_image_folder_bad_inputs(tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=2)
    with pytest.raises(FileNotFoundError, match=r"split folder .*nowhere/train not found"):
        ImageFolderDataModule(root=str(tmp_path / "nowhere")).setup()
    (root / "train" / "emu").mkdir()
    with pytest.raises(DatasetFileError, match=r"class folder\(s\) \[.*train/emu'\] are empty"):
        ImageFolderDataModule(root=str(root)).setup()
    (root / "train" / "emu").rmdir()
    bad = root / "train" / "dog" / "img_9.png"
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(bad)  # 16-bit grey
    with pytest.raises(DatasetFileError, match=r"img_9.png: image mode 'I;16'; expected 8-bit"):
        ImageFolderDataModule(root=str(root)).setup()
    bad.unlink()
    (root / "test" / "fox").rename(root / "test" / "owl")
    with pytest.raises(
        DatasetFileError, match=r"test has classes \['cat', 'dog', 'owl'\].*not in train: \['owl'\]"
    ):
        ImageFolderDataModule(root=str(root)).setup()
