"""Small data modules, networks and methods the test modules share; none of them is a test.

``TinyDigits`` is also named by class path in CLI tests (``tests.helpers.builders.TinyDigits``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.data.base import RealDataModule
from ddlight.methods import DataDAM
from ddlight.methods.trajectory import FIEX, Experts
from ddlight.models import ConvNet


class TinyDigits(RealDataModule):
    """4 classes of 12x12 uint8 blobs at class-dependent places plus noise: learnable in a few steps."""

    num_classes = 4
    channels = 1
    mean = (0.2,)
    std = (0.3,)
    class_names = ("a", "b", "c", "d")

    def __init__(self, n_train: int = 160, n_test: int = 40, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=64, seed=seed)
        self.n_train, self.n_test = n_train, n_test

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n_train if split == "train" else self.n_test
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        labels = torch.arange(n) % 4
        images = torch.randint(0, 60, (n, 1, 12, 12), generator=gen)
        rows, cols = (labels // 2) * 6, (labels % 2) * 6
        grid = torch.arange(12)
        inside_r = (grid[None, :] >= rows[:, None]) & (grid[None, :] < rows[:, None] + 6)
        inside_c = (grid[None, :] >= cols[:, None]) & (grid[None, :] < cols[:, None] + 6)
        images = images + 180 * (inside_r[:, :, None] & inside_c[:, None, :])[:, None].long()
        return images.clamp(0, 255).to(torch.uint8), labels


def tiny_net() -> ConvNet:
    return ConvNet(channel=1, num_classes=4, width=8, depth=2, im_size=12)


def make_trainer(max_epochs: int, root: Path) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        limit_train_batches=3,
        default_root_dir=str(root),
    )


def make_experts(buffer_dir: Path, **kw) -> Experts:
    args = dict(
        net=tiny_net(),
        num_experts=2,
        epochs=3,
        buffer_dir=str(buffer_dir),
        el2n_models=2,
        el2n_epochs=1,
        fiex=FIEX(init_ratio=0.5, add_end_epoch=1, rm_epoch_first=1, rm_epoch_second=2),
        dsa_strategy="color_crop_cutout_scale_rotate",
    )
    args.update(kw)
    return Experts(**args)


def bundled_set(ipc: int = 2) -> tuple[SyntheticSet, MNISTDataModule]:
    dm = MNISTDataModule(source="bundled")
    dm.setup()
    idx = torch.cat([torch.nonzero(dm.train_labels == c).flatten()[:ipc] for c in range(10)])
    images = (dm.train_images[idx].float() / 255 - 0.1307) / 0.3081
    syn = SyntheticSet(
        images=images,
        labels=dm.train_labels[idx],
        mean=dm.mean,
        std=dm.std,
        num_classes=10,
        method="real",
        dataset="mnist",
        ipc=ipc,
    )
    return syn, dm


def small_model(**kw) -> DataDAM:
    args = dict(ipc=2, batch_real=8, steps_per_network=100, grid_every=0, dsa_strategy="none")
    args.update(kw)
    return DataDAM(ConvNet(width=16, micro_batch=0), **args)
