import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddlight.data import MNISTDataModule, SyntheticDataModule, SyntheticSet, SyntheticSetError
from ddlight.data.synthetic import FORMAT_VERSION

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def make_set(ipc: int = 2, num_classes: int = 10, channels: int = 1, size: int = 28, soft: bool = False):
    gen = torch.Generator().manual_seed(0)
    n = ipc * num_classes
    images = torch.randn(n, channels, size, size, generator=gen)
    hard = torch.arange(num_classes).repeat_interleave(ipc)
    labels = torch.randn(n, num_classes, generator=gen) + 5 * torch.eye(num_classes)[hard] if soft else hard
    return SyntheticSet(
        images=images,
        labels=labels,
        mean=MNIST_MEAN * channels,
        std=MNIST_STD * channels,
        num_classes=num_classes,
        method="datadam",
        dataset="mnist",
        ipc=ipc,
        iteration=123,
        seed=7,
        config={"model": {"class_path": "ConvNet", "depth": (3, 4)}, "path": Path("/x"), "obj": object()},
        extra={"student_lr": torch.tensor(0.01), "note": "hi"},
    )


def payload(**changes):
    p = make_set().to_payload()
    for k, v in changes.items():
        if v is DROP:
            del p[k]
        else:
            p[k] = v
    return p


DROP = object()


def write(tmp_path, obj) -> Path:
    path = tmp_path / "syn.pt"
    torch.save(obj, path)
    return path


def assert_load_error(path: Path, *words: str) -> None:
    with pytest.raises(SyntheticSetError) as err:
        SyntheticSet.load(path)
    msg = str(err.value)
    assert str(path.name) in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("soft", [False, True])
def test_round_trip(tmp_path, soft):
    s = make_set(soft=soft)
    out = s.save(tmp_path / "deep" / "dir" / "syn.pt")
    assert out.is_file()
    t = SyntheticSet.load(out)
    assert torch.equal(t.images, s.images) and t.images.dtype == torch.float32
    assert torch.equal(t.labels, s.labels)
    assert t.labels.dtype == (torch.float32 if soft else torch.int64)
    assert t.mean == s.mean and isinstance(t.mean, tuple) and t.std == s.std and isinstance(t.std, tuple)
    for f in ("num_classes", "method", "dataset", "ipc", "iteration", "seed"):
        assert getattr(t, f) == getattr(s, f), f
    # config is stored JSON-like: tuples become lists, unknown objects their str
    assert t.config["model"] == {"class_path": "ConvNet", "depth": [3, 4]}
    assert t.config["path"] == "/x" and isinstance(t.config["obj"], str)
    assert torch.equal(t.extra["student_lr"], torch.tensor(0.01)) and t.extra["note"] == "hi"
    assert torch.equal(t.hard_labels, torch.arange(10).repeat_interleave(2))


def test_save_detaches_and_makes_contiguous(tmp_path):
    s = make_set()
    s.images = s.images.transpose(2, 3).requires_grad_(True)
    SyntheticSet.load(s.save(tmp_path / "a.pt"))
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["images"].is_contiguous() and not raw["images"].requires_grad
    assert isinstance(raw["mean"], list)


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "syn.pt"
    make_set(ipc=1).save(path)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        make_set(ipc=3).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["syn.pt"]
    monkeypatch.undo()
    assert SyntheticSet.load(path).ipc == 1


def test_save_refuses_invalid_set(tmp_path):
    s = make_set()
    s.ipc = 3
    with pytest.raises(SyntheticSetError, match="'ipc'"):
        s.save(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError) as err:
        SyntheticSet.load(path)
    assert str(path) in str(err.value) and isinstance(err.value, SyntheticSetError)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "syn.pt"
    path.write_text("hello, not a checkpoint")
    assert_load_error(path, "not a readable torch file")


def test_truncated_file(tmp_path):
    path = make_set().save(tmp_path / "syn.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_load_error(path, "not a readable torch file")


def test_unpicklable_object_refused(tmp_path):
    # weights_only loading refuses arbitrary classes, which must surface as our error, not a pickle one
    path = write(tmp_path, payload(config=Path("/x")))
    assert_load_error(path, "not a readable torch file")


def test_not_a_dict(tmp_path):
    assert_load_error(write(tmp_path, [1, 2, 3]), "expected a dict", "list")


def test_wrong_format_version(tmp_path):
    assert_load_error(write(tmp_path, payload(format_version=99)), "'format_version'", "99")


def test_missing_format_version(tmp_path):
    assert_load_error(write(tmp_path, payload(format_version=DROP)), "format_version", "missing")


def test_missing_keys(tmp_path):
    assert_load_error(write(tmp_path, payload(labels=DROP, ipc=DROP)), "missing", "labels", "ipc")


@pytest.mark.parametrize(
    "images",
    [torch.zeros(20, 28, 28), torch.zeros(20, 1, 28, 28, dtype=torch.uint8), "not a tensor"],
    ids=["3d", "uint8", "str"],
)
def test_images_not_4d_float(tmp_path, images):
    assert_load_error(write(tmp_path, payload(images=images)), "'images'", "4-D float")


@pytest.mark.parametrize(
    "labels",
    [torch.zeros(20), torch.zeros(20, 10, dtype=torch.long), torch.zeros(20, 10, 1), [0] * 20],
    ids=["1d-float", "2d-int", "3d", "list"],
)
def test_labels_wrong_shape_or_dtype(tmp_path, labels):
    assert_load_error(write(tmp_path, payload(labels=labels)), "'labels'")


def test_label_count_mismatch(tmp_path):
    path = write(tmp_path, payload(labels=torch.zeros(19, dtype=torch.long)))
    assert_load_error(path, "'labels'", "one label per image (20)", "19")


@pytest.mark.parametrize("bad", [-1, 10])
def test_hard_labels_out_of_range(tmp_path, bad):
    labels = torch.arange(10).repeat_interleave(2)
    labels[3] = bad
    assert_load_error(write(tmp_path, payload(labels=labels)), "'labels'", "[0, 10)")


def test_soft_labels_wrong_k(tmp_path):
    assert_load_error(write(tmp_path, payload(labels=torch.zeros(20, 7))), "'labels'", "num_classes = 10")


@pytest.mark.parametrize("key", ["mean", "std"])
def test_stats_length_mismatch(tmp_path, key):
    assert_load_error(write(tmp_path, payload(**{key: [0.5, 0.5, 0.5]})), f"'{key}'", "1 value(s)")


def test_non_finite_images(tmp_path):
    images = torch.zeros(20, 1, 28, 28)
    images[0, 0, 0, 0] = float("nan")
    images[1, 0, 0, 0] = float("inf")
    assert_load_error(write(tmp_path, payload(images=images)), "'images'", "finite", "2 NaN/inf")


def test_ipc_times_classes_must_match_hard_label_count(tmp_path):
    assert_load_error(write(tmp_path, payload(ipc=3)), "'ipc'", "3 * 10 = 30", "20")


def test_soft_labels_do_not_need_ipc_balance(tmp_path):
    s = make_set(soft=True)
    s.ipc = 3
    assert SyntheticSet.load(s.save(tmp_path / "s.pt")).ipc == 3


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_png_one_row_per_class(tmp_path, channels):
    ipc, k, size = 3, 4, 8
    s = make_set(ipc=ipc, num_classes=k, channels=channels, size=size)
    # shuffle so that the grid has to sort by label
    perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(1))
    s.images, s.labels = s.images[perm], s.labels[perm]
    out = s.save_grid(tmp_path / "grids" / "grid.png")
    assert os.listdir(tmp_path / "grids") == ["grid.png"]
    with Image.open(out) as im:
        assert im.format == "PNG"
        # torchvision pads 2 px around and between tiles
        assert im.size == (ipc * (size + 2) + 2, k * (size + 2) + 2)
    g = s.grid_tensor()
    assert g.shape == (3, k * (size + 2) + 2, ipc * (size + 2) + 2)
    assert float(g.min()) >= 0 and float(g.max()) <= 1
    # row r, column j holds the j-th image of class r
    r, j = 2, 1
    tile = g[
        :, 2 + r * (size + 2) : 2 + r * (size + 2) + size, 2 + j * (size + 2) : 2 + j * (size + 2) + size
    ]
    idx = torch.nonzero(s.labels == r).flatten()[j]
    expect = (s.images[idx] * MNIST_STD[0] + MNIST_MEAN[0]).clamp(0, 1)
    assert torch.allclose(tile, expect.expand(3, -1, -1), atol=1e-6)


def test_grid_caps_columns(tmp_path):
    s = make_set(ipc=25, num_classes=2, size=4)
    with Image.open(s.save_grid(tmp_path / "g.png")) as im:
        assert im.size == (20 * 6 + 2, 2 * 6 + 2)
    with Image.open(s.save_grid(tmp_path / "g5.png", nrow=5)) as im:
        assert im.size == (5 * 6 + 2, 2 * 6 + 2)


@pytest.fixture(scope="module")
def mnist():
    dm = MNISTDataModule(source="bundled", eval_batch_size=512)
    dm.setup()
    return dm


def test_datamodule_serves_set_and_real_test(tmp_path, mnist):
    s = make_set(ipc=5)
    path = s.save(tmp_path / "syn.pt")
    dm = SyntheticDataModule(str(path), mnist, batch_size=16, seed=3)
    dm.setup()
    assert dm.synthetic.ipc == 5 and dm.hparams["batch_size"] == 16
    assert (dm.num_classes, dm.channels, tuple(dm.image_size)) == (10, 1, (28, 28))
    assert dm.mean == MNIST_MEAN and torch.equal(dm.std_t, torch.tensor(MNIST_STD))
    batches = list(dm.train_dataloader())
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    # every image served exactly once per epoch, paired with its own label
    xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    src = (xs.flatten(1)[:, None, :] == s.images.flatten(1)[None, :, :]).all(2).int().argmax(1)
    assert sorted(src.tolist()) == list(range(len(s)))
    assert torch.equal(s.images[src], xs) and torch.equal(s.labels[src], ys)
    # shuffled, and reproducibly so
    again = torch.cat([b[1] for b in SyntheticDataModule(str(path), mnist, 16, seed=3).train_dataloader()])
    assert torch.equal(ys, again) and not torch.equal(ys, s.labels)
    test_y = torch.cat([b[1] for b in dm.test_dataloader()])
    assert torch.equal(test_y, mnist.test_labels) and len(test_y) == 1000
    assert len(dm.val_dataloader()) == len(mnist.val_dataloader())


def test_datamodule_soft_labels(tmp_path, mnist):
    path = make_set(soft=True).save(tmp_path / "soft.pt")
    x, y = next(iter(SyntheticDataModule(str(path), mnist, batch_size=8).train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and y.shape == (8, 10) and y.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"channels": 3}, "channels"),
        ({"num_classes": 4}, "num_classes"),
        ({"size": 32}, "image_size"),
    ],
)
def test_datamodule_mismatch(tmp_path, mnist, kwargs, field):
    path = make_set(**kwargs).save(tmp_path / "syn.pt")
    dm = SyntheticDataModule(str(path), mnist)
    with pytest.raises(SyntheticSetError) as err:
        dm.setup()
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


@pytest.mark.parametrize("field", ["mean", "std"])
def test_datamodule_stats_mismatch(tmp_path, mnist, field):
    s = make_set()
    setattr(s, field, (0.5,))
    path = s.save(tmp_path / "syn.pt")
    with pytest.raises(SyntheticSetError, match=f"'{field}'"):
        SyntheticDataModule(str(path), mnist).setup()
