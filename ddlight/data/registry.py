"""The real data modules by the dataset name that synthetic sets record, so that a stage holding only a
set (the evaluator, the scores, a script) asks the module's class for its facts instead of matching on
the name's text."""

from __future__ import annotations

from ddlight.data.base import RealDataModule
from ddlight.data.cifar import CIFAR10DataModule, CIFAR100DataModule, SVHNDataModule
from ddlight.data.image_sets import TinyImageNetDataModule
from ddlight.data.mhist import MHISTDataModule
from ddlight.data.mnist import FashionMNISTDataModule, MNISTDataModule

DATAMODULES: dict[str, type[RealDataModule]] = {
    m.name: m
    for m in (
        MNISTDataModule,
        FashionMNISTDataModule,
        CIFAR10DataModule,
        CIFAR100DataModule,
        SVHNDataModule,
        TinyImageNetDataModule,
        MHISTDataModule,
    )
}


def flip_invariant(dataset: str) -> bool:
    """``flip_invariant`` of the data module named ``dataset``; a dataset without a class of its own here
    (an ImageFolder, a test's module) is taken as natural images, which the field flips."""
    module = DATAMODULES.get(dataset.lower())
    return True if module is None else module.flip_invariant
