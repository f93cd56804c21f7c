"""Sums over chunks of a batch whose graphs are rebuilt one chunk at a time in the backward pass.

Distribution matching needs only per-class sums of per-image features of the synthetic set, and such a
sum's gradient with respect to each image depends on that image's own graph alone. So the forward can
run chunk by chunk without keeping any graph, and the backward can recompute one chunk's graph, push the
incoming gradient through it and drop it before the next: memory holds one chunk's activations instead
of the whole set's, for one extra forward (what it saves on the MHIST config: docs/performance.md).
The gradient is the exact one: the recomputation repeats the forward's operations on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

ChunkFn = Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]


def class_sums(x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, ...) rows summed per class -> (num_classes, D)."""
    flat = x.flatten(1)
    return flat.new_zeros(num_classes, flat.shape[1]).index_add_(0, labels, flat)


class ChunkedSums(torch.autograd.Function):
    """``sum over chunks of fn(x[idx], idx)`` (a tuple of tensors) for ``idx`` in ``chunks``."""

    @staticmethod
    def forward(ctx: Any, fn: ChunkFn, chunks: Sequence[torch.Tensor], x: torch.Tensor) -> tuple:
        device = x.device.type
        ctx.fn, ctx.chunks = fn, chunks
        # the backward recomputes under the autocast the forward ran in (backward runs outside it)
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(x)
        total: list[torch.Tensor] | None = None
        for idx in chunks:
            out = fn(x[idx], idx)
            total = list(out) if total is None else [t + o for t, o in zip(total, out, strict=True)]
        assert total is not None, "ChunkedSums needs at least one chunk"
        return tuple(total)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        (x,) = ctx.saved_tensors
        device, enabled, dtype = ctx.autocast
        grad_x = torch.zeros_like(x)
        for idx in ctx.chunks:
            part = x[idx].detach().requires_grad_(True)
            with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
                outs = ctx.fn(part, idx)
            pairs = [(o, g) for o, g in zip(outs, grads, strict=True) if g is not None and o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            if part.grad is not None:
                grad_x[idx] += part.grad
        return None, None, grad_x


def chunked_sums(fn: ChunkFn, x: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    """:class:`ChunkedSums` of ``fn`` over ``x`` in chunks of ``chunk`` rows."""
    chunks = list(torch.arange(x.shape[0], device=x.device).split(chunk))
    return ChunkedSums.apply(fn, chunks, x)
