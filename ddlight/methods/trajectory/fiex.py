"""PAD's FIEX curriculum: which samples each expert epoch trains on.

PAD's contribution to stage 1 is this data scheduler ("filtering information extraction",
``buffer/buffer_CL.py`` of NUS-HPC-AI-Lab/PAD): each epoch trains only on the samples a difficulty score
(:mod:`~ddlight.methods.trajectory.el2n`) admits - the easiest ``init_ratio`` of every class first, harder
ones added until ``add_end_epoch``, then the easiest removed again late in training - so that early
trajectory segments (used for small IPC) carry easy patterns and late ones (large IPC) hard ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ddlight.data.base import TensorBatchDataset
from ddlight.utils.classwise import rank_within_class


@dataclass(frozen=True)
class FIEX:
    """The curriculum's knobs, PAD's ``buffer_CL.py`` arguments (epochs 0-based).

    The defaults are PAD README's buffer command for CIFAR-10 (its argparse defaults, init_ratio=1.0 and
    add_end_epoch=100, switch the curriculum off and are not what the paper ran). Frozen, so one instance
    can be every module's default.

    Args:
        init_ratio: fraction of every class (the easiest) trained on at epoch 0.
        add_end_epoch: the fraction grows linearly to 1 at this epoch.
        rm_epoch_first, rm_easy_ratio_first: after ``rm_epoch_first`` the easiest ``rm_easy_ratio_first``
            of every class leave again ...
        rm_epoch_second, rm_easy_ratio_second: ... and after ``rm_epoch_second`` the easiest
            ``rm_easy_ratio_second``.
    """

    init_ratio: float = 0.75
    add_end_epoch: int = 20
    rm_epoch_first: int = 40
    rm_epoch_second: int = 60
    rm_easy_ratio_first: float = 0.1
    rm_easy_ratio_second: float = 0.2

    def __post_init__(self) -> None:
        # Checked at construction, so a bad config fails at parse time rather than after the EL2N phase.
        if not 0.0 < self.init_ratio <= 1.0:
            raise ValueError(f"init_ratio must be in (0, 1], got {self.init_ratio}")
        for name in ("rm_easy_ratio_first", "rm_easy_ratio_second"):
            r = getattr(self, name)
            if not 0.0 <= r < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {r}")


def fiex_phase(epoch: int, fiex: FIEX = FIEX()) -> tuple[float, float]:
    """``(keep, drop)`` for ``epoch`` (0-based): each class trains on its ranks in
    ``[floor(drop * n_c), floor(keep * n_c))`` of the easy-to-hard order.

    The branch order is PAD's: the adding phase wins over the removing ones when they overlap.
    """
    if epoch <= fiex.add_end_epoch:
        # Linear growth from init_ratio to 1 at add_end_epoch (PAD's linear_cl_scheduler_acse); an
        # add_end_epoch of 0 would divide by zero there and means "everything from the start" here.
        init, end = fiex.init_ratio, fiex.add_end_epoch
        keep = 1.0 if end <= 0 else min(1.0, init + (1.0 - init) * epoch / end)
        return keep, 0.0
    if epoch <= fiex.rm_epoch_first:
        return 1.0, 0.0
    if epoch <= fiex.rm_epoch_second:
        return 1.0, float(fiex.rm_easy_ratio_first)
    return 1.0, float(fiex.rm_easy_ratio_second)


def fiex_schedule(
    scores: torch.Tensor, epoch: int, labels: torch.Tensor | None = None, fiex: FIEX = FIEX()
) -> torch.Tensor:
    """Sorted indices of the samples active at 0-based ``epoch`` (easy = low score).

    With ``labels`` the fractions apply inside every class, as PAD slices its (classes, per_class)
    difficulty table, so the class balance never shifts; without, over the whole set.
    """
    scores = scores.detach().to("cpu", torch.float32)
    if labels is None:
        labels = torch.zeros(len(scores), dtype=torch.long)
    labels = labels.to("cpu", torch.long)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and scores {tuple(scores.shape)} must match")
    keep, drop = fiex_phase(epoch, fiex)
    rank, counts = rank_within_class(scores, labels)
    size = counts[labels]
    # floor(p * n_c) as PAD's int(p * data_size_by_class); float64 keeps e.g. 0.1 * 60 from landing at 5.99.
    lo = torch.floor(drop * size.double()).long()
    hi = torch.floor(keep * size.double()).long()
    return torch.nonzero((rank >= lo) & (rank < hi)).flatten()


def shuffled_loader(ds: TensorBatchDataset, indices: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """One epoch over ``indices`` in a seeded random order, the last batch possibly short (MTT's
    ``shuffle=True`` loader). The batches are index tensors cut from one permutation, so no per-sample
    Python runs while loading."""
    perm = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))]
    return DataLoader(ds, sampler=list(perm.split(batch_size)), batch_size=None)
