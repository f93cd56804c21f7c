"""Evaluation metrics shared by the stages that test networks on real data (experts, the evaluator).

Not torchmetrics' ``MulticlassAccuracy(average="micro")``: it would give the same counts, but computes the
ratio in float32, so every reported accuracy (an expert's ``test_acc`` in its buffer manifest, the
evaluator's results) would change in its last digits; it also needs ``num_classes`` up front. Counting
correct predictions of all networks in one pass over the data is all this needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.inference_mode()
def accuracy(nets: Iterable[nn.Module], loader: Iterable, device: torch.device | str = "cpu") -> torch.Tensor:
    """Micro accuracy of each network on ``loader`` (one pass over the data for all networks)."""
    nets = list(nets)
    for n in nets:
        n.eval()
    correct = torch.zeros(len(nets), dtype=torch.long, device=device)
    total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        for i, n in enumerate(nets):
            correct[i] += (n(x).argmax(1) == y).sum()
        total += y.numel()
    return correct.double().cpu() / max(1, total)
