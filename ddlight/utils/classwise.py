"""Class-wise tensor bookkeeping shared by the data modules, the distillers and the report.

Everything here is one tensor operation over all classes at once: drawing, ranking and holding out per
class are on the hot path of every distiller step (class-balanced episodes), where a Python loop over
classes would cost more than the draw. It sits below ``data/`` because the data modules use it.
"""

from __future__ import annotations

import torch


def normalize_uint8(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float32."""
    x = images.float().div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def denormalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised float -> [0, 1] for display."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def rank_within_class(
    keys: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's 0-based rank by ascending ``keys`` inside its class (ties by index), and the
    per-class counts ``(num_classes,)``."""
    labels = labels.long()
    order = torch.argsort(keys, stable=True)
    order = order[torch.argsort(labels[order], stable=True)]
    counts = torch.bincount(labels, minlength=num_classes or 0)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts[labels[order]]
    return rank, counts


def class_index(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices grouped by class as a padded (num_classes, max_count) matrix (-1 pads) plus per-class counts,
    so a class-balanced draw for all classes is one gather."""
    rank, counts = rank_within_class(torch.arange(len(labels)), labels, num_classes)
    table = torch.full((num_classes, int(counts.max())), -1, dtype=torch.long)
    table[labels.long(), rank] = torch.arange(len(labels))
    return table, counts


def sample_per_class(
    table: torch.Tensor, counts: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(num_classes, n) indices, drawn without replacement inside each class (with it if a class is
    smaller than n)."""
    k, max_count = table.shape
    keys = torch.rand(k, max_count, generator=generator)
    valid = table >= 0
    keys = keys.masked_fill(~valid, 2.0)
    if n <= int(counts.min()):
        cols = keys.topk(n, dim=1, largest=False).indices
    else:
        cols = (torch.rand(k, n, generator=generator) * counts[:, None]).long()
    return table.gather(1, cols)


def stratified_holdout(labels: torch.Tensor, num_classes: int, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a seeded, class-stratified holdout of ``round(fraction * count)`` of each class."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    keys = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed))
    rank, counts = rank_within_class(keys, labels, num_classes)
    take = torch.round(counts.double() * fraction).long()
    return torch.nonzero(rank < take[labels.long()]).flatten()
