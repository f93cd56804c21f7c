import pytest
import torch

from ddlight.data import MNISTDataModule
from ddlight.utils.classwise import class_index, sample_per_class, stratified_holdout


def test_real_mnist_layout(mnist_root):
    dm = MNISTDataModule(data_dir=str(mnist_root))
    dm.setup()
    assert dm.train_images.shape == (60000, 1, 28, 28) and dm.train_images.dtype == torch.uint8
    assert dm.test_images.shape == (10000, 1, 28, 28)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    # normalised with the usual MNIST statistics: near zero mean, near unit std over a batch
    assert abs(float(x.mean())) < 0.15 and 0.8 < float(x.std()) < 1.2


def test_validation_split_is_stratified_and_seeded(mnist_root):
    a = MNISTDataModule(data_dir=str(mnist_root), val_fraction=0.1, seed=3)
    b = MNISTDataModule(data_dir=str(mnist_root), val_fraction=0.1, seed=3)
    a.setup()
    b.setup()
    assert len(a.val_labels) + len(a.train_labels) == 60000
    assert torch.equal(a.val_labels, b.val_labels) and torch.equal(a.val_images, b.val_images)
    frac = torch.bincount(a.val_labels, minlength=10) / torch.bincount(a.train_labels + 0, minlength=10).add(
        torch.bincount(a.val_labels, minlength=10)
    )
    assert torch.allclose(frac, torch.full((10,), 0.1), atol=0.002)


def test_bundled_offline_source():
    dm = MNISTDataModule(source="bundled", seed=1)
    dm.setup()
    assert dm.train_images.shape == (4000, 1, 28, 28)
    assert dm.test_images.shape == (1000, 1, 28, 28)
    assert torch.bincount(dm.test_labels).tolist() == [100] * 10
    # the held-out test split does not depend on the run's seed
    other = MNISTDataModule(source="bundled", seed=2)
    other.setup()
    assert torch.equal(dm.test_images, other.test_images)


def test_missing_files_error_names_path_and_remedies(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "download: true" in msg and "source: bundled" in msg


def test_bad_source():
    with pytest.raises(ValueError, match="source must be"):
        MNISTDataModule(source="kaggle")


def test_class_balanced_sampling_without_replacement():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 7)
    table, counts = class_index(labels, 3)
    assert counts.tolist() == [5, 3, 7]
    idx = sample_per_class(table, counts, 3, torch.Generator().manual_seed(0))
    assert idx.shape == (3, 3)
    assert (labels[idx] == torch.arange(3)[:, None]).all()
    assert all(len(set(row.tolist())) == 3 for row in idx)  # no repeats inside a class


def test_episodes_are_reproducible_and_rank_specific():
    dm = MNISTDataModule(source="bundled")
    a = dm.episodes(4, seed=5)
    x1, y1 = next(iter(a))
    b = dm.episodes(4, seed=5)
    x2, _ = next(iter(b))
    assert torch.equal(x1, x2) and x1.shape == (40, 1, 28, 28)
    assert torch.equal(y1, torch.arange(10).repeat_interleave(4))
    b.rank = 1
    assert not torch.equal(b.episode(0)[0], x1)
    a.load_state_dict({"counter": 7})
    assert torch.equal(next(iter(a))[0], b.__class__.episode(a, 7)[0])
    assert a.state_dict() == {"counter": 8}


def test_stratified_holdout_counts():
    labels = torch.arange(4).repeat_interleave(10)
    idx = stratified_holdout(labels, 4, 0.3, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [3, 3, 3, 3]


def write_idx(path, dims, payload_bytes: int | None = None) -> None:
    """An IDX file of uint8 zeros with header ``dims``; ``payload_bytes`` cuts (or pads) its data."""
    import math

    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    n = math.prod(dims) if payload_bytes is None else payload_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + bytes(n))


def test_idx_header_check_by_hand(tmp_path):
    from ddlight.data.idx import IDXFileError, check_idx

    write_idx(tmp_path / "ok", (3, 2, 2))
    assert check_idx(tmp_path / "ok") == (3, 2, 2)
    write_idx(tmp_path / "long", (3, 2, 2), 13)
    with pytest.raises(IDXFileError, match="longer than its header says"):
        check_idx(tmp_path / "long")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(IDXFileError, match="not an IDX file"):
        check_idx(tmp_path / "junk")


def test_truncated_idx_names_the_file(tmp_path):
    from ddlight.data.idx import IDXFileError

    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", (60000, 28, 28), 1000)  # an interrupted copy
    write_idx(raw / "train-labels-idx1-ubyte", (60000,))
    with pytest.raises(IDXFileError) as err:
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    msg = str(err.value)
    assert str(raw / "train-images-idx3-ubyte") in msg and "truncated" in msg
    assert "60000 x 28 x 28 uint8 (47,040,016 bytes)" in msg and "1,016 bytes" in msg


def test_fashion_mnist_reads_its_idx_files(tmp_path):
    from ddlight.data import FashionMNISTDataModule
    from tests.helpers.datasets import class_images, write_fashion_mnist

    write_fashion_mnist(tmp_path, n_train=20, n_test=10)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path))
    dm.setup()
    assert dm.train_images.shape == (20, 1, 28, 28) and dm.train_images.dtype == torch.uint8
    assert dm.test_labels.tolist() == list(range(10)) and dm.class_names[9] == "Ankle boot"
    want = torch.from_numpy(class_images(torch.arange(10).numpy(), (28, 28), 1)).unsqueeze(1)
    assert torch.equal(dm.test_images, want)
    x, _ = next(iter(dm.test_dataloader()))
    assert torch.allclose(x, (want.float() / 255 - 0.2861) / 0.3530, atol=1e-6)
    assert dm.identity()["dataset"] == "fashionmnist"


def test_fashion_mnist_missing_truncated_and_no_bundle(tmp_path):
    from ddlight.data import FashionMNISTDataModule
    from ddlight.data.idx import IDXFileError
    from tests.helpers.datasets import write_fashion_mnist

    with pytest.raises(
        FileNotFoundError, match=r"FashionMNIST files not found: .*FashionMNIST/raw.*download: true"
    ):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()
    write_fashion_mnist(tmp_path)
    img = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-5])
    with pytest.raises(IDXFileError, match=r"t10k-images-idx3-ubyte: truncated: .*declares 20 x 28 x 28"):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(ValueError, match=r"source must be one of \('torchvision',\)"):
        FashionMNISTDataModule(source="bundled")
