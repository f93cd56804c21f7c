"""The optimiser the field trains networks with (baselines, evaluation runs, experts): plain SGD with
momentum and weight decay, as DC/DSA/DM's ``evaluate_synset``, MTT's ``buffer.py`` and PAD's
``buffer_CL.py`` build it. One constructor so that the three trainings cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def network_sgd(
    params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
