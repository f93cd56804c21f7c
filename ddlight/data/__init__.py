"""Data modules (real and synthetic) and synthetic-set I/O."""

from ddlight.data.base import ClassBalancedEpisodes, RealDataModule, TensorBatchDataset
from ddlight.data.mhist import MHISTDataModule
from ddlight.data.mnist import MNISTDataModule

__all__ = [
    "ClassBalancedEpisodes",
    "MHISTDataModule",
    "MNISTDataModule",
    "RealDataModule",
    "TensorBatchDataset",
]
