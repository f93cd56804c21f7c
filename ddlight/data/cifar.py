"""CIFAR-10, CIFAR-100 and SVHN through torchvision's own readers, with errors that name the file.

torchvision reads these formats (CIFAR's python pickles, SVHN's ``.mat``), so we never parse them; what
it does not do is say which file is wrong: a missing or damaged file ends in "Dataset not found or
corrupted", and a short pickle in a reshape error. So the readers run with the MD5 check replaced by an
existence check (the checksums would also refuse every generated test fixture), and when a read fails
each expected file is examined to name the culprit and what was expected. The class names in CIFAR's
``batches.meta`` / ``meta`` are compared with the official ones: CIFAR-100 files placed where CIFAR-10's
belong are refused by name, not trained on.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddlight.data.base import DatasetFileError, RealDataModule
from ddlight.data.cifar_names import CIFAR10_CLASSES, CIFAR100_CLASSES


class TorchvisionDataModule(RealDataModule):
    """Base of the data modules whose files torchvision reads; subclasses implement ``read(train)``.

    Args:
        data_dir: the ``root`` torchvision is given (the layout under it is each subclass's).
        download: let torchvision download the files when missing (needs internet).
        **kwargs: ``RealDataModule``'s (batch_size, eval_batch_size, val_fraction, seed,
            episode_per_class, zca, zca_reg), as documented for :class:`~ddlight.data.mnist.MNISTDataModule`.
    """

    # What a user must place, relative to data_dir, named in the "not found" error.
    layout: str = ""

    def __init__(
        self,
        data_dir: str = "../shared/data",
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download

    def prepare_data(self) -> None:
        if self.download:
            self.read(train=True)
            self.read(train=False)

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.read(train=split == "train")
        if images.shape[1:] != (self.channels, self.im_size, self.im_size):
            raise DatasetFileError(
                f"{type(self).__name__}: {split} images under {self.root} have shape "
                f"{tuple(images.shape[1:])}, expected {(self.channels, self.im_size, self.im_size)}"
            )
        return images, labels

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def not_found(self, missing: list[Path], err: Exception | None = None) -> FileNotFoundError:
        return FileNotFoundError(
            f"{type(self).__name__}: files not found: {', '.join(str(p) for p in missing)}. Expected layout "
            f"under data_dir={self.root.resolve()}: {self.layout}. Either set `download: true` "
            "(data.init_args.download) on a machine with internet, or place the files there"
            + (f" ({type(err).__name__}: {err})" if err is not None else "")
        )


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 from torchvision's python-pickle layout ``data_dir/cifar-10-batches-py/`` (5 training
    batches, ``test_batch``, ``batches.meta``); official 50k/10k split, mean/std as DC/MTT normalise it.
    MTT/DATM/PAD distil CIFAR with ``zca: true`` (``zca_reg`` 0.1)."""

    name = "cifar10"
    num_classes = 10
    channels = 3
    im_size = 32
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2023, 0.1994, 0.2010)
    class_names = CIFAR10_CLASSES
    reader = "CIFAR10"
    folder = "cifar-10-batches-py"
    layout = "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles)"

    def _tv_class(self) -> type:
        import torchvision.datasets

        base = getattr(torchvision.datasets, self.reader)

        class Unchecked(base):  # existence instead of MD5: see the module docstring
            train_list = [[name, None] for name, _ in base.train_list]
            test_list = [[name, None] for name, _ in base.test_list]
            meta = {**base.meta, "md5": None}

        return Unchecked

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self._tv_class()
        files = [self.root / self.folder / n for n, _ in (cls.train_list if train else cls.test_list)]
        files.append(self.root / self.folder / cls.meta["filename"])
        missing = [p for p in files if not p.is_file()]
        if missing and not self.download:
            raise self.not_found(missing)
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except Exception as err:  # RuntimeError (missing), UnpicklingError/EOFError, ValueError (reshape)
            self.diagnose(files)
            raise self.not_found([p for p in files if not p.is_file()] or files, err) from err
        self.check_names(files[-1], list(ds.classes))
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(ds.targets, dtype=torch.long)

    def diagnose(self, files: list[Path]) -> None:
        """Name the file torchvision could not read and what it should hold."""
        for path in files:
            if not path.is_file():
                continue
            try:
                entry = _unpickle(path)
            except Exception as err:
                raise DatasetFileError(
                    f"{path}: not a readable python pickle ({type(err).__name__}: {err}); expected one of "
                    f"{type(self).__name__}'s batches in torchvision's layout ({self.layout}). Copy it "
                    "again, or delete it and set `download: true`"
                ) from err
            if path == files[-1]:
                continue
            data = np.asarray(entry.get("data", [])) if isinstance(entry, dict) else np.asarray([])
            labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None or len(labels) != len(data):
                raise DatasetFileError(
                    f"{path}: expected a dict with 'data' of N rows of 3072 uint8 (3 x 32 x 32) and N "
                    f"labels; got data of shape {data.shape} and {len(labels) if labels else 'no'} labels"
                )

    def check_names(self, meta: Path, names: list[str]) -> None:
        if tuple(names) != tuple(self.class_names):
            raise DatasetFileError(
                f"{meta}: class names {names[:5]}... ({len(names)}) are not {type(self).__name__}'s "
                f"{len(self.class_names)} official ones ({list(self.class_names[:5])}...): another "
                "dataset's files in this one's folder?"
            )


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (fine labels) from ``data_dir/cifar-100-python/{train, test, meta}``; mean/std as in
    DC/MTT."""

    name = "cifar100"
    num_classes = 100
    mean = (0.5071, 0.4866, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    class_names = CIFAR100_CLASSES
    reader = "CIFAR100"
    folder = "cifar-100-python"
    layout = "cifar-100-python/{train, test, meta} (python pickles, fine labels)"


class SVHNDataModule(TorchvisionDataModule):
    """SVHN's cropped digits from torchvision's ``data_dir/{train,test}_32x32.mat`` (``extra`` unused, as
    the field); torchvision maps label 10 to digit 0. Mean/std as DC/MTT normalise it."""

    name = "svhn"
    num_classes = 10
    channels = 3
    im_size = 32
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    class_names = tuple(str(i) for i in range(10))
    layout = "train_32x32.mat and test_32x32.mat (MATLAB files with X: 32x32x3xN uint8, y: Nx1 in 1..10)"

    def read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import SVHN

        class Unchecked(SVHN):  # existence instead of MD5: see the module docstring
            def _check_integrity(self) -> bool:
                return os.path.isfile(os.path.join(self.root, self.filename))

        split = "train" if train else "test"
        path = self.root / SVHN.split_list[split][1]
        if not path.is_file() and not self.download:
            raise self.not_found([path])
        try:
            ds = Unchecked(str(self.root), split=split, download=self.download)
        except Exception as err:
            if not path.is_file():
                raise self.not_found([path], err) from err
            raise DatasetFileError(
                f"{path}: torchvision's SVHN reader failed ({type(err).__name__}: {err}); expected a MATLAB "
                f"file with {self.layout.split('(')[1].rstrip(')')}"
            ) from err
        labels = torch.from_numpy(np.asarray(ds.labels)).long()
        if ds.data.ndim != 4 or ds.data.shape[0] != len(labels) or ds.data.dtype != np.uint8:
            raise DatasetFileError(
                f"{path}: X holds {ds.data.shape} {ds.data.dtype} for {len(labels)} labels; expected "
                "32x32x3xN uint8 with N labels"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise DatasetFileError(
                f"{path}: labels outside 1..10 (y); got {int(labels.max()) or 10} after mapping"
            )
        return torch.from_numpy(np.ascontiguousarray(ds.data)), labels
