"""PAD's FIEM ("filtering information embedding"): shallow parameters leave the matching loss.

PAD's argument: shallow layers carry low-level information that matching would inject into the images in
excess; matching the deeper layers only embeds the higher-level patterns. ``depth_ratio`` follows
``distill/PAD_depth.py`` of NUS-HPC-AI-Lab/PAD's history, the version that implements the paper's masking
and matches the ``depth_ratio`` keys of its ``configs/*/ConvIN/IPC*.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# PAD's configs/CIFAR-10/ConvIN/IPC{1,10,50,500,1000}.yaml: fraction of the flat parameter vector (from the
# first layer on) left out of the matching loss. The released values are not monotone in IPC; they are
# what the authors tuned.
DEPTH_RATIOS: dict[int, float] = {1: 0.0, 10: 0.5, 50: 0.25, 500: 0.5, 1000: 0.5}


def default_depth_ratio(ipc: int) -> float:
    """PAD's CIFAR-10 ratio for the largest configured IPC not above ``ipc``."""
    return DEPTH_RATIOS[max(k for k in DEPTH_RATIOS if k <= max(ipc, 1))]


def fiem_mask(param_sizes: Sequence[int], depth_ratio: float) -> torch.Tensor:
    """Boolean mask over the flat parameter vector: ``False`` for the first ``int(depth_ratio * P)``
    entries.

    The cut is by parameter count, not by layer, and may fall inside a tensor: that is PAD's rule
    (``keep_indices = arange(P)[int(depth_ratio * P):]``), so "shallow" means the parameters that come
    first in ``named_parameters`` order.
    """
    if not 0.0 <= depth_ratio < 1.0:
        raise ValueError(f"depth_ratio must be in [0, 1), got {depth_ratio}")
    total = int(sum(param_sizes))
    mask = torch.ones(total, dtype=torch.bool)
    mask[: int(depth_ratio * total)] = False
    return mask


def loss_ratio_mask(student: torch.Tensor, target: torch.Tensor, loss_ratio: float) -> torch.Tensor:
    """Boolean mask over the flat parameter vector: ``False`` for the ``int(loss_ratio * P)`` entries whose
    student-to-target distance ``(student - target)^2`` is smallest at this iteration.

    This is the rule of the released ``distill/PAD.py`` (NUS-HPC-AI-Lab/PAD @ 2a4bc91, lines 557-566:
    ``keep_indices = loss_indices[int(args.loss_ratio * len(param_losses)):]`` after sorting the
    per-parameter losses ascending), which keeps the same entries in both norms: parameters the student
    already matches carry little signal, and leaving them out of the denominator as well keeps the loss's
    scale. The choice is not differentiated (a sort), only the kept entries' values are.
    """
    if not 0.0 <= loss_ratio < 1.0:
        raise ValueError(f"loss_ratio must be in [0, 1), got {loss_ratio}")
    per = (student.detach() - target).pow(2)
    mask = torch.ones_like(per, dtype=torch.bool)
    mask[torch.sort(per).indices[: int(loss_ratio * per.numel())]] = False
    return mask


def kept_per_parameter(names: Sequence[str], sizes: Sequence[int], mask: torch.Tensor) -> dict[str, int]:
    """How many entries of each named parameter the mask keeps (for logs and tests)."""
    kept = [int(m.sum()) for m in mask.split(list(sizes))]
    return dict(zip(names, kept, strict=True))


def mask_summary(names: Sequence[str], sizes: Sequence[int], mask: torch.Tensor, depth_ratio: float) -> str:
    """What the matching loss sees, in words: how many parameters, which tensors it leaves out."""
    kept = kept_per_parameter(names, sizes, mask)
    dropped = [n for n, k in kept.items() if k == 0]
    partial = [n for (n, k), s in zip(kept.items(), sizes, strict=True) if 0 < k < s]
    return (
        f"matching {int(mask.sum())} of {len(mask)} parameters (depth_ratio {depth_ratio}); "
        f"left out: {dropped or 'none'}" + (f", partly: {partial}" if partial else "")
    )
