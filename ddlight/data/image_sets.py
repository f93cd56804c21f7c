"""Data modules over image files: Tiny-ImageNet-200 and any ImageFolder (reading in ``data/folders.py``).

The files are decoded once into uint8 tensors at setup; a 100k-image Tiny-ImageNet takes minutes on two
cores to decode, which is paid once per process, not per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddlight.data.base import DatasetFileError, RealDataModule
from ddlight.data.folders import (
    read_wnids,
    read_words,
    stack_images,
    tiny_train_files,
    tiny_val_files,
)


class TinyImageNetDataModule(RealDataModule):
    """Tiny-ImageNet-200 (64x64, 200 classes) from ``data_dir/tiny-imagenet-200`` in the official layout;
    the labelled ``val`` split is the test set, as the field uses it (the official test set has no
    labels). Mean/std are ImageNet's, as MTT/DATM normalise it; the field distils it with ConvNet-4.
    There is no ``download``: the zip (cs231n.stanford.edu/tiny-imagenet-200.zip) is unpacked by hand.

    Args:
        data_dir: the folder holding ``tiny-imagenet-200/``.
        **kwargs: ``RealDataModule``'s (batch_size, eval_batch_size, val_fraction, seed,
            episode_per_class, zca, zca_reg), as documented for :class:`~ddlight.data.mnist.MNISTDataModule`.
    """

    name = "tinyimagenet"
    num_classes = 200
    channels = 3
    im_size = 64
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(
        self,
        data_dir: str = "../shared/data",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self._wnids: list[str] | None = None

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "tiny-imagenet-200"

    @property
    def wnids(self) -> list[str]:
        if self._wnids is None:
            self._wnids = read_wnids(self.root, self.num_classes)
        return self._wnids

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return read_words(self.root, self.wnids)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        paths, labels = (tiny_train_files if split == "train" else tiny_val_files)(self.root, self.wnids)
        return stack_images(paths, "RGB", self.im_size, resize=False), torch.tensor(labels, dtype=torch.long)


class ImageFolderDataModule(RealDataModule):
    """Any dataset as ``root/train/<class>/*`` and ``root/test/<class>/*`` (torchvision's ImageFolder scan,
    so its image extensions and sorted class order), every image resized once at load to ``im_size`` x
    ``im_size`` (aspect ratio not kept) and converted to RGB (``channels: 3``) or grey (``channels: 1``).
    Mean/std are computed per channel from the training images and recorded in every synthetic set.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        im_size: side of the square images served.
        channels: 3 (RGB) or 1 (grey).
        name: the dataset's identity in synthetic sets and pairing checks (default: ``root``'s folder
            name), since two ImageFolders are two datasets.
        **kwargs: ``RealDataModule``'s (batch_size, eval_batch_size, val_fraction, seed,
            episode_per_class, zca, zca_reg), as documented for :class:`~ddlight.data.mnist.MNISTDataModule`.
    """

    def __init__(
        self,
        root: str = "data/imagefolder",
        im_size: int = 32,
        channels: int = 3,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if channels not in (1, 3) or im_size < 1:
            raise ValueError(
                f"ImageFolderDataModule needs channels 1 or 3 and im_size >= 1, got {channels}, {im_size}"
            )
        self.root = Path(root)
        self.im_size, self.channels = im_size, channels
        self.name = (name or self.root.resolve().name).lower()
        self._classes: list[str] | None = None
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def scan(self, split: str) -> tuple[list[Path], list[int], list[str]]:
        from torchvision.datasets import ImageFolder

        folder = self.root / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"ImageFolderDataModule: split folder {folder.resolve()} not found; expected "
                f"{self.root}/train/<class>/* and {self.root}/test/<class>/*"
            )
        try:
            ds = ImageFolder(str(folder), loader=str)
        except FileNotFoundError as err:  # torchvision: no class folders, or one without images
            empty = sorted(d.name for d in folder.iterdir() if d.is_dir() and not any(d.iterdir()))
            where = f"class folder(s) {[str(folder / e) for e in empty]} are empty" if empty else str(err)
            raise DatasetFileError(
                f"ImageFolderDataModule: {where}; expected at least one image per class in {folder}/<class>/"
            ) from err
        return [Path(p) for p, _ in ds.samples], [y for _, y in ds.samples], list(ds.classes)

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = self.scan("train")[2]
        return self._classes

    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.classes)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    @property
    def mean(self) -> tuple[float, ...]:  # type: ignore[override]
        if self._stats is None:
            self.setup()
        return self._stats[0]  # type: ignore[index]

    @property
    def std(self) -> tuple[float, ...]:  # type: ignore[override]
        if self._stats is None:
            self.setup()
        return self._stats[1]  # type: ignore[index]

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        paths, labels, classes = self.scan(split)
        if split == "test" and classes != self.classes:
            extra = sorted(set(classes) - set(self.classes))
            raise DatasetFileError(
                f"ImageFolderDataModule: {self.root / 'test'} has classes {classes}, expected train's "
                f"{self.classes}" + (f" (not in train: {extra})" if extra else "")
            )
        mode = "RGB" if self.channels == 3 else "L"
        images = stack_images(paths, mode, self.im_size, resize=True)
        if split == "train":
            self._stats = channel_stats(images)
        return images, torch.tensor(labels, dtype=torch.long)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images scaled to [0, 1], as the published
    statistics of the other datasets were computed; accumulated in float64 per channel."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1)
    mean = x.double().mean(1) / 255.0
    std = x.double().std(1, unbiased=False) / 255.0
    if bool((std <= 0).any()):
        raise DatasetFileError("ImageFolderDataModule: a channel of the training images is constant (std 0)")
    return tuple(mean.tolist()), tuple(std.tolist())
