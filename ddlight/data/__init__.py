"""Data modules (real and synthetic) and synthetic-set I/O."""

from ddlight.data.base import ClassBalancedEpisodes, RealDataModule, TensorBatchDataset
from ddlight.data.mhist import MHISTDataModule
from ddlight.data.mnist import MNISTDataModule
from ddlight.data.synthetic import SyntheticSet, SyntheticSetError
from ddlight.data.synthetic_module import SyntheticDataModule

__all__ = [
    "ClassBalancedEpisodes",
    "MHISTDataModule",
    "MNISTDataModule",
    "RealDataModule",
    "TensorBatchDataset",
    "SyntheticDataModule",
    "SyntheticSet",
    "SyntheticSetError",
]
