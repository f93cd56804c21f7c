"""The data module that trains on a saved synthetic set and tests on the real data it came from.

Pairing is where a wrong evaluation would be born: a set distilled from other data still trains and
yields a number. So everything a set records about its data is compared with the real data module
before anything runs: dataset name, class names and count, channels, image size, normalisation, ZCA
(presence, regularisation and the images it was fitted on) and the SHA-256 of the real test split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from ddlight.data.base import RealDataModule, TensorBatchDataset, batch_loader, dataset_name
from ddlight.data.synthetic import STATS_ATOL, SyntheticSet, SyntheticSetError

ZCA_HINT = (
    "a set distilled in ZCA-whitened space is only meaningful against real images whitened by the same "
    "transform: set data.init_args.zca (and zca_reg) as in the distillation run, or distil again"
)
DIGEST_HINT = (
    "the real test split's content differs from the one the set was distilled beside (other files under "
    "the same name, e.g. another dataset's files placed in this one's folder)"
)


class SyntheticDataModule(L.LightningDataModule):
    """Trains on a saved synthetic set and evaluates on the real data it was distilled from.

    The set is checked against ``real`` up front because a set distilled from another dataset or with
    other normalisation would still train, and only produce quietly meaningless accuracies.

    ``labels``: ``saved`` trains on the labels as saved (soft logits for DATM/PAD sets); ``hard`` on their
    argmax, the protocol that compares every method's images on equal terms (a hard-label set is the same
    under both).
    """

    LABELS = ("saved", "hard")

    def __init__(
        self, path: str, real: RealDataModule, batch_size: int = 256, seed: int = 0, labels: str = "saved"
    ) -> None:
        super().__init__()
        if labels not in self.LABELS:
            raise ValueError(f"SyntheticDataModule.labels must be one of {self.LABELS}, got {labels!r}")
        self.save_hyperparameters()
        self.labels = labels
        self.path = path
        self.real = real
        self.batch_size = batch_size
        self.seed = seed
        self._synthetic: SyntheticSet | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._synthetic is not None:
            return
        syn = SyntheticSet.load(self.path)
        self.real.setup()
        check_matches(syn, self.real, self.path)
        if self.labels == "hard" and syn.is_soft:
            syn = dataclasses.replace(syn, labels=syn.labels.argmax(1))
        self._synthetic = syn

    @property
    def synthetic(self) -> SyntheticSet:
        self.setup()
        assert self._synthetic is not None
        return self._synthetic

    def train_dataloader(self) -> DataLoader:
        syn = self.synthetic
        # Offset by epoch so that a dataloader rebuilt on resume does not replay epoch 0's order.
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        ds = TensorBatchDataset(syn.images, syn.labels)
        return batch_loader(ds, self.batch_size, shuffle=True, seed=self.seed + epoch)  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        self.real.setup()
        return self.real.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        self.real.setup()
        return self.real.test_dataloader()

    def shape_args(self) -> dict[str, Any]:
        return self.real.shape_args()

    @property
    def num_classes(self) -> int:
        return self.real.num_classes

    @property
    def channels(self) -> int:
        return self.real.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.real.image_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.real.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.real.std

    @property
    def mean_t(self) -> torch.Tensor:
        return self.real.mean_t

    @property
    def std_t(self) -> torch.Tensor:
        return self.real.std_t


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= STATS_ATOL for x, y in zip(a, b, strict=True))


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and list(a) == list(b) if isinstance(a, list) else a == b


def _zca_text(zca: dict) -> str:
    """A ZCA record as compared: off, or its regularisation and the digest of the images it was fit on."""
    if not zca:
        return "off"
    return f"reg={float(zca['reg']):g} fitted on {str(zca.get('fit_sha256', '?'))[:12]}"


def check_matches(syn: SyntheticSet, real: RealDataModule, path: str | Path) -> None:
    """Refuse a set distilled from other data: dataset, classes, shape, normalisation, whitening, and the
    class names and test-set digest where the set records them. One line naming ``path``, the field, both
    values and the likely cause."""
    name = type(real).__name__

    def mismatch(key: str, have: Any, want: Any, why: str = "") -> SyntheticSetError:
        return SyntheticSetError(
            f"synthetic set {path}: field '{key}' is {have} but the real data module {name} has "
            f"{want}; {why or 'the set was distilled from other data or normalisation'} "
            f"(set dataset={syn.dataset!r}, data module dataset={dataset_name(real)!r})"
        )

    ident = real.identity()
    checks: list[tuple[str, Any, Any, Callable[[Any, Any], bool], str]] = [
        ("dataset", syn.dataset, dataset_name(real), lambda a, b: a == b, ""),
        ("num_classes", syn.num_classes, real.num_classes, lambda a, b: a == b, ""),
        ("channels", syn.channels, real.channels, lambda a, b: a == b, ""),
        ("image_size", syn.image_size, tuple(real.image_size), lambda a, b: tuple(a) == tuple(b), ""),
        ("mean", syn.mean, tuple(real.mean), _close, ""),
        ("std", syn.std, tuple(real.std), _close, ""),
        ("zca", _zca_text(syn.zca), _zca_text(ident.get("zca", {})), lambda a, b: a == b, ZCA_HINT),
    ]
    # Files older than these fields carry none; a set that records them must agree.
    if syn.class_names:
        checks.append(("class_names", syn.class_names, ident.get("class_names"), _same, ""))
    if syn.test_sha256:
        checks.append(("test_sha256", syn.test_sha256, ident.get("test_sha256"), _same, DIGEST_HINT))
    for key, have, want, ok, why in checks:
        if not ok(have, want):
            raise mismatch(key, have, want, why)
