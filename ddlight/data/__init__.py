"""Data modules (real and synthetic) and synthetic-set I/O."""

from ddlight.data.base import ClassBalancedEpisodes, DatasetFileError, RealDataModule, TensorBatchDataset
from ddlight.data.cifar import CIFAR10DataModule, CIFAR100DataModule, SVHNDataModule
from ddlight.data.image_sets import ImageFolderDataModule, TinyImageNetDataModule
from ddlight.data.mhist import MHISTDataModule
from ddlight.data.mnist import FashionMNISTDataModule, MNISTDataModule
from ddlight.data.registry import DATAMODULES, flip_invariant
from ddlight.data.synthetic import SyntheticSet, SyntheticSetError
from ddlight.data.synthetic_module import SyntheticDataModule
from ddlight.data.zca import ZCA, Normalizer

__all__ = [
    "DATAMODULES",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassBalancedEpisodes",
    "DatasetFileError",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MHISTDataModule",
    "MNISTDataModule",
    "Normalizer",
    "RealDataModule",
    "SVHNDataModule",
    "SyntheticDataModule",
    "SyntheticSet",
    "SyntheticSetError",
    "TensorBatchDataset",
    "TinyImageNetDataModule",
    "ZCA",
    "flip_invariant",
]
