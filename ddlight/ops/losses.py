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


def gradient_distance(
    syn: list[torch.Tensor], real: list[torch.Tensor], eps: float = 1e-6, per_class: bool = False
) -> torch.Tensor:
    """DC's layer-wise gradient distance ('ours' of ``match_loss``/``distance_wb``), summed over classes.

    Each entry is one parameter's gradient for every class, ``(K, out, ...)``: it is compared row by row per
    output channel (a conv kernel's ``in*h*w`` or a linear layer's ``in`` values) as ``1 - cos``, summed
    over channels and classes. Per-channel gradients (``(K, C)``: biases, norm scales) are skipped, as the
    reference returns 0 for them. The ``eps`` sits in the denominator, as released. ``per_class`` keeps
    the class dimension, ``(K,)``: the reference's per-class ``match_loss`` terms, which the parity
    fixtures compare one by one.
    """
    total = real[0].new_zeros(real[0].shape[:1] if per_class else ())
    for gs, gr in zip(syn, real, strict=True):
        if gr.dim() <= 2:
            continue
        gs, gr = gs.flatten(2), gr.flatten(2)
        cos = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + eps)
        total = total + ((1.0 - cos).sum(-1) if per_class else (1.0 - cos).sum())
    return total
