"""DATM/PAD's loss threshold: an iteration whose matching loss exceeds ``threshold`` leaves the synthetic
set as it was (the references skip the update). Applied on the device, so no step waits for the host to
read the loss; the skips are counted there too and reported once, at the end of fit.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


def guarded_step(opt: Any, ok: torch.Tensor | None) -> None:
    """``opt.step()``, undone where ``ok`` is False: DATM's threshold without reading the loss on
    the host. With dampening 0 a zero momentum buffer behaves like a fresh one, so restoring "no
    buffer yet" as zeros is exact."""
    if ok is None:
        opt.step()
        return
    inner = getattr(opt, "optimizer", opt)
    params = [p for g in inner.param_groups for p in g["params"] if p.grad is not None]
    old = [p.detach().clone() for p in params]
    old_buf = [inner.state.get(p, {}).get("momentum_buffer") for p in params]
    old_buf = [b.clone() if b is not None else None for b in old_buf]
    opt.step()
    with torch.no_grad():
        for p, before, buf in zip(params, old, old_buf, strict=True):
            p.copy_(torch.where(ok, p, before))
            new_buf = inner.state.get(p, {}).get("momentum_buffer")
            if new_buf is not None:
                new_buf.copy_(torch.where(ok, new_buf, buf if buf is not None else 0.0))


def report_skips(skipped: torch.Tensor | None, iterations: int, threshold: float | None) -> None:
    """Log how many of ``iterations`` the threshold skipped; warn when it skipped them all."""
    if skipped is None or not iterations:
        return
    n = int(skipped)
    rank_zero_info(f"[ddlight] PAD: loss_threshold {threshold} skipped {n} of {iterations} iterations")
    if n == iterations:
        rank_zero_warn(
            "PAD: every iteration's loss exceeded loss_threshold, so the synthetic set never "
            "changed. A noise initialisation typically starts above 1: set loss_threshold: null."
        )
