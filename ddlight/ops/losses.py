"""Losses shared by the distillers and the evaluator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_or_hard_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against hard labels, or against ``softmax(labels)`` when labels are logits (PAD)."""
    if labels.dtype.is_floating_point:
        return torch.sum(-F.softmax(labels, dim=-1) * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, labels)


def label_entropy(labels: torch.Tensor) -> float:
    """The floor of the training loss: mean entropy of the soft targets (0 for hard labels)."""
    if not labels.dtype.is_floating_point:
        return 0.0
    logp = F.log_softmax(labels.float(), dim=-1)
    return float(-(logp.exp() * logp).sum(-1).mean())


def matching_loss(
    student: torch.Tensor, start: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """||student - target||^2 / ||start - target||^2 over the entries ``mask`` keeps (trajectory matching).

    The denominator makes the loss comparable across start epochs (early segments move the parameters
    much more than late ones): 1 means the student got no closer than where it started. The references
    also divide both norms by the parameter count, which cancels.
    """
    if mask is not None:
        student, start, target = student[mask], start[mask], target[mask]
    return (student - target).pow(2).sum() / (start - target).pow(2).sum()
