"""Data modules (real and synthetic) and synthetic-set I/O."""

from ddlight.data.base import ClassBalancedEpisodes, RealDataModule, TensorBatchDataset
from ddlight.data.mhist import MHISTDataModule
from ddlight.data.mnist import MNISTDataModule
from ddlight.data.synthetic import SyntheticDataModule, SyntheticSet, SyntheticSetError

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
