"""The real-data splits that scoring a synthetic set needs: a validation split held out of the training
set (where a learning rate may be chosen: never on the test set) and seeded, class-balanced random
subsets drawn only from what is left (so the random baseline never trains on a validation image)."""

from __future__ import annotations

import torch

from ddlight.utils.classwise import rank_within_class, stratified_holdout


def validation_split(
    labels: torch.Tensor, num_classes: int, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation indices, pool indices) of the training set: a seeded, stratified ``fraction`` of each
    class, and every other index, both ascending."""
    val = stratified_holdout(labels, num_classes, fraction, seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return val.sort().values, torch.nonzero(keep).flatten()


def random_subset(
    labels: torch.Tensor, pool: torch.Tensor, num_classes: int, ipc: int, seed: int
) -> torch.Tensor:
    """``ipc`` indices per class drawn without replacement from ``pool``, grouped by class (class 0
    first, as synthetic sets are laid out); the same seed gives the same subset."""
    pool_labels = labels[pool].long()
    keys = torch.rand(len(pool), generator=torch.Generator().manual_seed(seed))
    rank, counts = rank_within_class(keys, pool_labels, num_classes)
    short = torch.nonzero(counts < ipc).flatten().tolist()
    if short:
        raise ValueError(
            f"a random subset of {ipc} images per class needs {ipc} per class outside the validation "
            f"split; class(es) {short} have {[int(counts[c]) for c in short]}"
        )
    chosen = torch.nonzero(rank < ipc).flatten()
    order = torch.argsort(pool_labels[chosen] * ipc + rank[chosen])
    return pool[chosen[order]]
