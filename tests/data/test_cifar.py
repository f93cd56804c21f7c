"""CIFAR-10/100 and SVHN on generated files in torchvision's layouts (pickles, .mat)."""

from __future__ import annotations

import pickle

import pytest
import torch

from ddlight.data import CIFAR10DataModule, CIFAR100DataModule, DatasetFileError, SVHNDataModule
from ddlight.data.cifar_names import CIFAR10_CLASSES
from tests.helpers.datasets import class_images, write_cifar, write_svhn


def test_cifar10_reads_torchvision_pickles(tmp_path):
    write_cifar(tmp_path, 10, per_class_train=2, per_class_test=1)
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    dm.setup()
    assert dm.train_images.shape == (20, 3, 32, 32) and dm.train_images.dtype == torch.uint8
    assert dm.test_images.shape == (10, 3, 32, 32)
    assert dm.shape_args() == {"channel": 3, "num_classes": 10, "im_size": 32}
    assert dm.class_names == CIFAR10_CLASSES and dm.class_names[0] == "airplane"
    # Labels in file order: the 5 batches are consecutive chunks of arange(20) % 10.
    assert dm.train_labels.tolist() == [i % 10 for i in range(20)]
    # Pixels by hand: the first test image is class 0, 20 + noise in [0, 40); NCHW from the CHW row.
    want = torch.from_numpy(class_images(torch.arange(10).numpy(), (3, 32, 32), 99))
    assert torch.equal(dm.test_images, want)
    x, _ = next(iter(dm.test_dataloader()))
    mean = torch.tensor(CIFAR10DataModule.mean).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10DataModule.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (want.float() / 255 - mean) / std, atol=1e-6)


def test_cifar100_fine_labels_and_names(tmp_path):
    write_cifar(tmp_path, 100, per_class_train=1, per_class_test=1)
    dm = CIFAR100DataModule(data_dir=str(tmp_path))
    dm.setup()
    assert dm.train_images.shape == (100, 3, 32, 32) and dm.num_classes == 100
    assert dm.train_labels.tolist() == list(range(100))
    assert dm.class_names[:3] == ("apple", "aquarium_fish", "baby") and dm.mean == (0.5071, 0.4866, 0.4409)


def test_missing_cifar_names_expected_path_and_download(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in msg and "download: true" in msg


def test_corrupt_pickle_names_the_file(tmp_path):
    write_cifar(tmp_path, 10)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])  # an interrupted copy
    with pytest.raises(DatasetFileError, match="data_batch_3: not a readable python pickle"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_wrong_row_length_names_the_file_and_expectation(tmp_path):
    write_cifar(tmp_path, 10)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(path.read_bytes())
    entry["data"] = entry["data"][:, :3000]
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(DatasetFileError, match=r"test_batch: expected .* 3072 uint8 .*shape \(20, 3000\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_cifar100_files_in_cifar10_folder_are_refused_by_their_names(tmp_path):
    write_cifar(tmp_path, 10)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": ["apple"] * 10}))
    with pytest.raises(DatasetFileError, match="batches.meta: class names .* not CIFAR10DataModule's"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path):
    write_svhn(tmp_path, n_train=20, n_test=10)
    dm = SVHNDataModule(data_dir=str(tmp_path))
    dm.setup()
    assert dm.train_images.shape == (20, 3, 32, 32) and dm.train_images.dtype == torch.uint8
    assert dm.train_labels.tolist() == [i % 10 for i in range(20)]
    want = torch.from_numpy(class_images(torch.arange(10).numpy(), (32, 32, 3), 1)).permute(0, 3, 1, 2)
    assert torch.equal(dm.test_images, want)


def test_svhn_missing_and_corrupt_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_32x32.mat.*download: true"):
        SVHNDataModule(data_dir=str(tmp_path)).setup()
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 junk")
    with pytest.raises(DatasetFileError, match="test_32x32.mat: torchvision's SVHN reader failed"):
        SVHNDataModule(data_dir=str(tmp_path)).setup()
