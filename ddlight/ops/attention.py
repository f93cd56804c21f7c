"""Spatial attention and the class-mean matching loss of DataDAM (Sajedi et al., ICCV 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spatial_attention(features: torch.Tensor, power: float = 4.0) -> torch.Tensor:
    """(N, C, H, W) activations -> (N, H*W) L2-normalised attention ``sum_c |f_c|^p``.

    The paper uses p = 4 (larger p emphasises the most discriminative locations); the authors' released
    code calls it with p = 1. Both are reachable through ``power``.
    """
    return F.normalize(abs_pow(features, power).sum(dim=1).flatten(1), p=2.0, dim=1)


def abs_pow(x: torch.Tensor, power: float) -> torch.Tensor:
    """``|x|^p``; a small integer ``p`` by repeated squaring, since ``pow`` with an exponent of 4 takes the
    generic path (several times slower than ``square().square()`` on MHIST-sized maps; docs/performance.md)
    and its backward another ``pow``. Even powers need no ``abs``. Equal within float rounding."""
    if power == 1:
        return x.abs()
    if not float(power).is_integer() or not 2 <= power <= 16:
        return x.abs().pow(power)
    n = int(power)
    base = x if n % 2 == 0 else x.abs()
    out = None
    while n:
        if n & 1:
            out = base if out is None else out * base
        n >>= 1
        if n:
            base = base.square()
    return out


def class_means(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class means of class-sorted rows: (K*n, ...) -> (K, D).

    Samples arrive grouped by class with the same count per class (episodes and the synthetic set are
    both laid out that way), so the means are one reshape, not a loop or a scatter.
    """
    return x.reshape(num_classes, x.shape[0] // num_classes, -1).mean(dim=1)


def mean_matching_loss(real_means: torch.Tensor, syn: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``sum_c || mean_i real_c,i - mean_j syn_c,j ||^2`` with the real side's means precomputed."""
    return (real_means - class_means(syn, num_classes)).pow(2).sum()
