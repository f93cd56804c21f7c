"""Tiny look-alikes of the field's datasets written in each real on-disk layout (no download, ever).

Every image is a per-class constant brightness plus seeded noise, so labels carry signal and the tests
can compute expected values by hand. Writers return the ``data_dir`` a data module is given.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ddlight.data.cifar_names import CIFAR10_CLASSES, CIFAR100_CLASSES


def class_images(labels: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 images of ``shape`` per label: 20 + 20 * label (mod 200) plus noise in [0, 40)."""
    rng = np.random.default_rng(seed)
    base = (20 + 20 * (labels % 10)).astype(np.int16).reshape(-1, *([1] * len(shape)))
    return (base + rng.integers(0, 40, size=(len(labels), *shape))).clip(0, 255).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (uint8 type 0x08) as MNIST/Fashion-MNIST ship them, uncompressed."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(head + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 20) -> Path:
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", class_images(labels, (28, 28), seed))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return Path(root)


def _cifar_entry(labels: np.ndarray, seed: int, key: str) -> dict:
    data = class_images(labels, (3, 32, 32), seed).reshape(len(labels), -1)
    return {"batch_label": "fixture", key: labels.tolist(), "data": data, "filenames": []}


def write_cifar(root: Path, classes: int = 10, per_class_train: int = 2, per_class_test: int = 2) -> Path:
    """torchvision's python layout: cifar-10-batches-py/ (5 batches) or cifar-100-python/ (train/test)."""
    root = Path(root)
    if classes == 10:
        folder, names, key = (
            root / "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "labels",
        )
        meta = ("batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": 0})
        test = "test_batch"
    else:
        folder, names, key, test = root / "cifar-100-python", ["train"], "fine_labels", "test"
        meta = ("meta", {"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": []})
    folder.mkdir(parents=True, exist_ok=True)
    train = np.arange(classes * per_class_train) % classes
    for i, chunk in enumerate(np.array_split(train, len(names))):
        (folder / names[i]).write_bytes(pickle.dumps(_cifar_entry(chunk, i, key)))
    test_labels = np.arange(classes * per_class_test) % classes
    (folder / test).write_bytes(pickle.dumps(_cifar_entry(test_labels, 99, key)))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1]))
    return root


def write_svhn(root: Path, n_train: int = 20, n_test: int = 20) -> Path:
    """``train_32x32.mat`` / ``test_32x32.mat``: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        labels = np.arange(n) % 10
        x = class_images(labels, (32, 32, 3), seed).transpose(1, 2, 3, 0)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": np.where(labels == 0, 10, labels).reshape(-1, 1)})
    return root


def _save(path: Path, arr: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def tiny_wnids(n: int = 200) -> list[str]:
    return [f"n{10000000 + i:08d}" for i in range(n)]


def write_tiny_imagenet(root: Path, per_class_train: int = 1, per_class_val: int = 1) -> Path:
    """The official tiny-imagenet-200/ tree (PNG-free: JPEG at quality 95, as shipped)."""
    base = Path(root) / "tiny-imagenet-200"
    wnids = tiny_wnids()
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(wnids)))
    labels = np.repeat(np.arange(200), per_class_train)
    imgs = class_images(labels, (64, 64, 3), 0)
    for j, (k, img) in enumerate(zip(labels, imgs, strict=True)):
        _save(base / "train" / wnids[k] / "images" / f"{wnids[k]}_{j}.JPEG", img, "JPEG")
    val_labels = np.repeat(np.arange(200), per_class_val)
    lines = []
    for j, (k, img) in enumerate(zip(val_labels, class_images(val_labels, (64, 64, 3), 1), strict=True)):
        _save(base / "val" / "images" / f"val_{j}.JPEG", img, "JPEG")
        lines.append(f"val_{j}.JPEG\t{wnids[k]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def write_image_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 4
) -> Path:
    """``root/{train,test}/<class>/*.png`` with mixed sizes and modes (RGB, L, P) to be resized once."""
    root = Path(root)
    sizes = ((40, 30), (16, 16), (50, 50), (20, 24))
    for split, seed in (("train", 0), ("test", 1)):
        labels = np.repeat(np.arange(len(classes)), per_class)
        for j, k in enumerate(labels):
            w, h = sizes[j % len(sizes)]
            arr = class_images(np.array([k]), (h, w, 3), seed * 1000 + j)[0]
            im = Image.fromarray(arr)
            im = im.convert(("RGB", "L", "P")[j % 3]) if j % 4 else im
            path = root / split / classes[k] / f"img_{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            im.save(path)
    return root
