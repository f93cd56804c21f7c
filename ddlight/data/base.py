"""Shared machinery of the real-image data modules.

Images stay uint8 in memory (MHIST at 224x224 would need 4x the RAM as float) and are converted and
normalised a whole batch at a time: a dataset indexed by a tensor of indices returns a ready batch, so
no per-sample Python code runs while loading.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import lightning as L
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from ddlight.data.zca import ZCA, Normalizer, tensor_sha256
from ddlight.utils.classwise import class_index, sample_per_class, stratified_holdout


class DatasetFileError(ValueError):
    """A dataset file exists but does not hold what its layout says it must (the message names it)."""


class TensorBatchDataset(Dataset):
    """A dataset whose ``__getitem__`` takes a list/tensor of indices and returns a whole batch.

    With ``mean``/``std`` (or a whole ``normalize``, e.g. a data module's ZCA-whitening
    :class:`~ddlight.data.zca.Normalizer`) the images are uint8 and normalised per batch (real data stays
    uint8 in memory); without, they are already-normalised floats (a synthetic set) and returned as stored.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        normalize: Normalizer | None = None,
    ) -> None:
        if normalize is None and mean is not None:
            normalize = Normalizer(mean, std)
        if normalize is not None and images.dtype != torch.uint8:
            raise TypeError(f"images to normalise must be uint8, got {images.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels if labels.dtype.is_floating_point else labels.long()
        self.normalize = normalize

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        x = self.images[idx]
        if self.normalize is not None:
            x = self.normalize(x)
        return x, self.labels[idx]


def batch_loader(
    ds: TensorBatchDataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
) -> DataLoader:
    """A DataLoader over whole-batch indexing; seeded so that shuffling is reproducible."""
    if shuffle:
        gen = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(range(len(ds)), generator=gen)
    else:
        sampler = SequentialSampler(range(len(ds)))
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None)


def check_episode(real: torch.Tensor, num_classes: int, batch_real: int, who: str) -> None:
    """Refuse a real batch that is not ``batch_real`` per class (the episodes below)."""
    expected = num_classes * batch_real
    if real.shape[0] != expected:
        raise ValueError(
            f"{who} expects class-balanced episodes of batch_real={batch_real} per class "
            f"({expected} images); got {real.shape[0]}. Set data.init_args.episode_per_class to {batch_real}."
        )


class ClassBalancedEpisodes(IterableDataset):
    """Endless class-balanced episodes of real images: ``n`` per class, all classes in one tensor.

    Distillers consume one episode per optimisation step. Episode ``i`` is a pure function of
    ``(seed, rank, i)``, and the counter is saved in checkpoints (Lightning's stateful-dataset hook), so
    a resumed run draws exactly the batches an uninterrupted one would; each DDP rank draws its own.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        n_per_class: int,
        normalize: Normalizer,
        seed: int = 0,
        rank: int = 0,
        epoch_length: int = 1000,
    ) -> None:
        self.images, self.labels = images, labels.long()
        self.epoch_length = epoch_length
        self.table, self.counts = class_index(self.labels, num_classes)
        if int(self.counts.min()) == 0:
            missing = torch.nonzero(self.counts == 0).flatten().tolist()
            raise ValueError(
                f"classes {missing} have no training images; cannot build class-balanced episodes"
            )
        if n_per_class > int(self.counts.min()):
            small = int(self.counts.argmin())
            warnings.warn(
                f"episodes of {n_per_class} images per class, but class {small} has only "
                f"{int(self.counts[small])} training images: its episodes repeat images (drawn with "
                "replacement); lower episode_per_class / batch_real to avoid it",
                stacklevel=2,
            )
        self.num_classes, self.n = num_classes, n_per_class
        self.normalize = normalize
        self.seed, self.rank = seed, rank
        self.counter = 0

    def episode(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.rank * 7_919 + i) % (2**63 - 1))
        idx = sample_per_class(self.table, self.counts, self.n, gen).flatten()
        return self.normalize(self.images[idx]), self.labels[idx]

    def __len__(self) -> int:
        # A finite "epoch" makes Lightning skip its one-batch prefetch, so the counter saved in a checkpoint
        # is exactly the number of episodes consumed; the stream itself never restarts between epochs.
        return self.epoch_length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.epoch_length):
            batch = self.episode(self.counter)
            self.counter += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"counter": self.counter}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.counter = int(state["counter"])


class EpisodeLoader(DataLoader):
    """A DataLoader over :class:`ClassBalancedEpisodes` that Lightning recognises as resumable."""

    def __init__(self, episodes: ClassBalancedEpisodes) -> None:
        super().__init__(episodes, batch_size=None)

    def state_dict(self) -> dict[str, int]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.dataset.load_state_dict(state)


def dataset_name(dm: Any) -> str:
    """A data module's dataset identity: its ``name`` (LightningDataModule's own attribute), else its class
    name without ``DataModule``; the one place that derives it, so a set and its real data agree."""
    return str(getattr(dm, "name", None) or type(dm).__name__.replace("DataModule", "")).lower()


class RealDataModule(L.LightningDataModule):
    """Base for real-image data modules: subclasses load uint8 splits, this class serves them.

    Besides ordinary loaders it exposes the in-memory uint8 tensors and normalisation statistics, which
    distillers and evaluators need (class-balanced sampling, initialising synthetic images, de-normalising
    image grids).
    """

    num_classes: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    # Whether a mirrored image still shows its class: DSA's "auto" strategy flips only where it does
    # (ops.augment.strategy_for). True for natural images; digit datasets declare False.
    flip_invariant: ClassVar[bool] = True
    # Side of the (square) images served, when known before loading; modules that only learn it from the
    # files leave it None and shape_args() loads them.
    im_size: int | None = None

    def __init__(
        self,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        val_fraction: float = 0.0,
        seed: int = 0,
        episode_per_class: int = 0,
        zca: bool = False,
        zca_reg: float = 0.1,
    ) -> None:
        super().__init__()
        if zca_reg <= 0:
            raise ValueError(f"zca_reg must be > 0 (added to the covariance's eigenvalues), got {zca_reg}")
        # Every level's arguments (the subclasses' frames are still on the stack), so a subclass lists only
        # its own and passes these on as **kwargs.
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.episode_per_class = episode_per_class
        self.zca, self.zca_reg = zca, zca_reg
        self.zca_transform: ZCA | None = None
        self.train_images: torch.Tensor | None = None
        self._loaded = False
        self._identity: dict[str, Any] | None = None

    # Subclasses return (uint8 images NCHW, int64 labels) for "train" and "test".
    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def shape_args(self) -> dict[str, Any]:
        """What a network must be built for; the CLI links these into every ``net`` so configs never type
        them (and cannot get them wrong)."""
        size = self.im_size if self.im_size is not None else self.image_size
        return {"channel": self.channels, "num_classes": self.num_classes, "im_size": size}

    @property
    def image_size(self) -> tuple[int, int]:
        self.setup()
        return tuple(self.train_images.shape[-2:])  # type: ignore[union-attr, return-value]

    @property
    def mean_t(self) -> torch.Tensor:
        return torch.tensor(self.mean, dtype=torch.float32)

    @property
    def std_t(self) -> torch.Tensor:
        return torch.tensor(self.std, dtype=torch.float32)

    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        train_x, train_y = self.load_split("train")
        self.test_images, self.test_labels = self.load_split("test")
        if self.val_fraction > 0:
            val_idx = stratified_holdout(train_y, self.num_classes, self.val_fraction, self.seed)
            keep = torch.ones(len(train_y), dtype=torch.bool)
            keep[val_idx] = False
            self.val_images, self.val_labels = train_x[val_idx], train_y[val_idx]
            train_x, train_y = train_x[keep], train_y[keep]
        else:
            self.val_images, self.val_labels = self.test_images, self.test_labels
        self.train_images, self.train_labels = train_x, train_y
        if self.zca:
            # Fitted on the normalised training images, as MTT/PAD fit kornia's ZCAWhitening.
            base = Normalizer(self.mean_t, self.std_t)
            self.zca_transform = ZCA.fit(train_x, self.zca_reg, transform=base)
        self._loaded = True

    @property
    def normalizer(self) -> Normalizer:
        """The one uint8 -> network-input map of this data (mean/std, then ZCA when enabled)."""
        self.setup()
        return Normalizer(self.mean_t, self.std_t, self.zca_transform)

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """What every stage feeds networks: routing all real images here is what keeps ZCA unskippable."""
        return self.normalizer(images_u8)

    def dataset(self, images: torch.Tensor, labels: torch.Tensor) -> TensorBatchDataset:
        """A whole-batch dataset of uint8 ``images`` normalised (and whitened) like every other batch."""
        return TensorBatchDataset(images, labels, normalize=self.normalizer)

    def identity(self) -> dict[str, Any]:
        """What a synthetic set records about the data it was distilled from, and what pairing compares:
        the name, class names, normalisation, ZCA and a SHA-256 of the test split's content. The digest is
        what makes a disguised dataset (Fashion-MNIST files placed as MNIST's) impossible to evaluate
        against the real one: names and statistics can agree, the test images cannot."""
        if self._identity is None:
            self.setup()
            zca: dict[str, Any] = {}
            if self.zca_transform is not None:
                zca = {"reg": self.zca_reg, "fit_sha256": tensor_sha256(self.train_images)}
            self._identity = {
                "dataset": dataset_name(self),
                "class_names": [str(c) for c in self.class_names],
                "zca": zca,
                "test_sha256": tensor_sha256(self.test_images, self.test_labels),
            }
        return dict(self._identity)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.episode_per_class > 0:
            return EpisodeLoader(self.episodes(self.episode_per_class))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return batch_loader(
            self.dataset(self.train_images, self.train_labels), self.batch_size, True, self.seed + epoch
        )

    def episodes(self, n_per_class: int, seed: int | None = None) -> ClassBalancedEpisodes:
        self.setup()
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return ClassBalancedEpisodes(
            self.train_images,
            self.train_labels,
            self.num_classes,
            n_per_class,
            self.normalizer,
            seed=self.seed if seed is None else seed,
            rank=rank,
        )

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return batch_loader(self.dataset(self.val_images, self.val_labels), self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return batch_loader(self.dataset(self.test_images, self.test_labels), self.eval_batch_size, False)

    def describe(self) -> dict[str, Any]:
        """Class counts per split, logged because MHIST is imbalanced and accuracy must be read with them."""
        self.setup()
        out = {}
        for split, labels in (("train", self.train_labels), ("test", self.test_labels)):
            counts = torch.bincount(labels, minlength=self.num_classes).tolist()
            out[split] = dict(zip(self.class_names, counts, strict=True))
        return out
