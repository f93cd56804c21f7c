"""Seeded re-initialisation of a network in place."""

from __future__ import annotations

import torch
from torch import nn


def reinitialize(net: nn.Module, seed: int) -> nn.Module:
    """Give ``net`` fresh default-initialised weights drawn from ``seed``.

    Distillers need a new random network for (almost) every step; re-drawing the weights of one module
    is cheaper than rebuilding it from its config and keeps the global RNG stream untouched (forked), so a
    run stays reproducible and a resumed run sees the same networks as an uninterrupted one.
    """
    devices = [p.device.index or 0 for p in net.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for m in net.modules():
            if m is not net and hasattr(m, "reset_parameters"):
                m.reset_parameters()
            elif m is net and hasattr(m, "reset_parameters") and not list(m.children()):
                m.reset_parameters()
    return net


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (splitmix-style), so (seed, step, rank) streams never collide
    the way ``seed + step`` would."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + ((h << 6) & (2**64 - 1)) + (h >> 2)) & (2**64 - 1)
        h = (h * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    return h & (2**63 - 1)
