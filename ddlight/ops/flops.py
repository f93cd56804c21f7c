"""Model cost as fvcore counts it.

fvcore counts one fused multiply-add as one "flop", i.e. its numbers are MACs; the conventional FLOP
figure is about twice that. Every number ddlight reports carries that label so nobody compares MACs
against FLOPs by accident.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, object]:
    """fvcore's count for one image of shape (C, H, W): total MACs, per-operator MACs, parameters."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        x = torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype)
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        # fvcore logs a warning per op it skips (pooling, activations); they cost ~nothing and the
        # noise hides real messages.
        logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore traces with torch.jit, which now warns on every call
            total = int(analysis.total())
            by_op = {k: int(v) for k, v in analysis.by_operator().items()}
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return {"macs": total, "by_operator": by_op, "params": params, "flops_approx": 2 * total}


def format_cost(cost: dict[str, object]) -> str:
    macs = cost["macs"]
    return (
        f"{cost['params'] / 1e6:.3f}M parameters, {macs / 1e6:.2f}M MACs per image "
        f"(fvcore 'flops': one multiply-add = 1; conventional FLOPs ~ {2 * macs / 1e6:.1f}M)"
    )
