"""The unrolled student of trajectory matching: N differentiable SGD steps on the synthetic set, their
random draws, and the memory they cost.

Memory: each unrolled step keeps the activations of a forward and of a backward (the student update
``theta - lr * grad`` is differentiated again), so the graph grows linearly with ``syn_steps`` and with
the minibatch: the paper's 80 steps outgrow a 24 GB machine without segments, which recompute the graph
piece by piece (measured sizes and times: docs/performance.md). ``memory/graph_saved_mb`` logs
the bytes autograd holds for the outer backward (outside recomputed segments) and ``memory/peak_mb`` the
process peak (RSS on CPU, allocator peak on CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.func import functional_call

from ddlight.models.convnet import use_lean_graph
from ddlight.ops.augment import DSA, DSAParams
from ddlight.ops.losses import soft_or_hard_ce

Steps = list[tuple[torch.Tensor, DSAParams]]
Unflatten = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def minibatch_schedule(n: int, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches for ``steps`` student steps, as the references draw them: chunks of a random
    permutation taken from the end (so a short remainder chunk comes first), a new permutation when
    the chunks run out."""
    out: list[torch.Tensor] = []
    chunks: list[torch.Tensor] = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.randperm(n, generator=generator).split(batch))
        out.append(chunks.pop())
    return out


def segment_bounds(steps: int, segments: int) -> list[int]:
    """Boundaries of ``segments`` near-equal runs of steps (one run when ``segments`` is 0)."""
    s = max(1, min(segments, steps)) if segments > 0 else 1
    return [round(i * steps / s) for i in range(s + 1)]


class SavedBytes(torch.autograd.graph.saved_tensors_hooks):
    """Counts the distinct storages autograd saves for backward while active.

    The packed value is a detached alias: keeping the tensor itself would create reference cycles
    (autograd restores the graph links on unpack, so higher-order gradients are unaffected). Recomputed
    segments shadow these hooks with their own, so activations that die with their forward are not
    counted.
    """

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        super().__init__(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t.detach()

    @property
    def megabytes(self) -> float:
        return sum(self.storages.values()) / 2**20


@dataclass
class IterationPlan:
    """Everything random about one distillation step, drawn up front so that recomputed segments
    recompute exactly the same augmentations and batches."""

    expert: int
    start_epoch: int
    bound: int
    batches: list[torch.Tensor]
    augs: list[DSAParams]


def student_steps(
    net: nn.Module,
    dsa: DSA,
    unflatten: Unflatten,
    flat: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: torch.Tensor,
    steps: Steps,
    create_graph: bool = True,
) -> torch.Tensor:
    """Student SGD steps from ``flat``; ``create_graph=False`` gives the values only (no graph kept
    across steps), which is all the forward of a recomputed segment needs. Only a kept graph is lean
    (:func:`~ddlight.models.use_lean_graph`): the graph-free pass is first-order, where ATen's ReLU and
    pooling backward are faster than the bool mask's."""
    use_lean_graph(net, twice_differentiated=create_graph)
    with torch.enable_grad():
        for idx, aug in steps:
            x = dsa.apply(images[idx], aug)
            out = functional_call(net, unflatten(flat), (x,))
            ce = soft_or_hard_ce(out, labels[idx])
            (grad,) = torch.autograd.grad(ce, flat, create_graph=create_graph)
            flat = flat - lr * grad
            if not create_graph:
                flat = flat.detach().requires_grad_(True)
    return flat if create_graph else flat.detach()


def unroll_student(
    run: Callable[..., torch.Tensor],
    start: torch.Tensor,
    plan: IterationPlan,
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: torch.Tensor,
    segments: int = 0,
) -> torch.Tensor:
    """The student after ``len(plan.batches)`` differentiable SGD steps from ``start``, ``run`` being
    :func:`student_steps` bound to a network, its augmentation and parameter layout; ``segments > 0``
    recomputes the graph segment by segment in the backward pass instead of keeping it. The last
    segment is recomputed too: keeping its graph from the forward saves its no-graph pass (a few % of the
    time) but raised the process's peak RSS by 0.6-0.9 GB at 4-5 segments on MNIST IPC 10 (glibc keeps
    the heap the forward's transients fragmented; docs/performance.md)."""
    steps = list(zip(plan.batches, plan.augs, strict=True))
    flat = start.detach().clone().requires_grad_(True)
    bounds = segment_bounds(len(steps), segments)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if segments > 0:
            flat = _RecomputedSegment.apply(run, steps[a:b], flat, images, labels, lr)
        else:
            flat = run(flat, images, labels, lr, steps[a:b])
    return flat


# MB of unrolled graph a trajectory distiller keeps by default: a graph that fits stays whole; one that does
# not is recomputed in segments, which costs one graph-free pass over every step whatever their number, so
# the budget is small: MNIST IPC 10 at 20 student steps (about 235 MB a step) runs in 5 segments within 3 GB
# of peak memory (docs/performance.md).
DEFAULT_MEMORY_BUDGET_MB = 1024.0


def segments_for_budget(step_mb: float, steps: int, budget_mb: float) -> int:
    """The fewest recomputed segments whose largest one keeps at most ``budget_mb`` of graph (0: the
    whole unrolled graph fits, nothing is recomputed). A segment holds at least one step, so a budget
    below one step's graph gives one segment per step."""
    if steps * step_mb <= budget_mb:
        return 0
    per_segment = max(1, int(budget_mb // step_mb)) if step_mb > 0 else steps
    return min(steps, math.ceil(steps / per_segment))


def budget_segments(one_step: Callable[[], Any], steps: int, budget_mb: float) -> int:
    """Segments for ``budget_mb``, from the graph of ``one_step()`` (one unrolled student step) measured
    once; logged."""
    saved = SavedBytes()
    with saved:
        one_step()
    segments = segments_for_budget(saved.megabytes, steps, budget_mb)
    rank_zero_info(
        f"[ddlight] one student step keeps {saved.megabytes:.1f} MB of graph: {segments} checkpoint "
        f"segment(s) of {steps} steps fit memory_budget_mb={budget_mb:g}"
    )
    return segments


def segments_from_budget(
    run: Callable[..., torch.Tensor],
    start: torch.Tensor,
    plan: IterationPlan,
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: torch.Tensor,
    budget_mb: float,
) -> int:
    """:func:`budget_segments` for ``plan``: its first student step from ``start``, measured once."""
    first = [(plan.batches[0], plan.augs[0])]

    def one() -> torch.Tensor:
        return run(start.detach().clone().requires_grad_(True), images, labels, lr, first)

    return budget_segments(one, len(plan.batches), budget_mb)


def _shadow_pack(t: torch.Tensor) -> torch.Tensor:
    return t.detach()


def _shadow_unpack(t: torch.Tensor) -> torch.Tensor:
    return t


class _RecomputedSegment(torch.autograd.Function):
    """Student steps whose graph is rebuilt in the backward pass instead of being kept.

    ``torch.utils.checkpoint`` does not fit here: the segment itself calls ``autograd.grad`` (the student's
    SGD step), and the non-reentrant checkpoint answers every saved-tensor access of that inner backward
    by recomputing the segment again, which costs more time and memory than no checkpoint at all. This
    Function runs the forward without a graph across steps, keeps only its inputs, and in backward
    recomputes the segment with its full graph and backpropagates through it once.
    """

    @staticmethod
    def forward(
        ctx: Any,
        run: Callable[..., torch.Tensor],
        steps: Steps,
        flat: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        lr: torch.Tensor,
    ) -> torch.Tensor:
        ctx.run, ctx.steps = run, steps
        ctx.save_for_backward(flat, images, labels, lr)
        # Shadow any outer saved-tensor hooks (the memory counter): what the forward builds dies here.
        with torch.autograd.graph.saved_tensors_hooks(_shadow_pack, _shadow_unpack):
            values = [t.detach() for t in (images, labels, lr)]
            return run(flat.detach().requires_grad_(True), *values, steps, create_graph=False)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        needs = ctx.needs_input_grad[2:]  # flat, images, labels, lr
        # flat always requires grad: the student's own SGD step differentiates with respect to it.
        inputs = [
            t.detach().requires_grad_(need or i == 0)
            for i, (t, need) in enumerate(zip(ctx.saved_tensors, needs, strict=True))
        ]
        with torch.enable_grad():
            out = ctx.run(*inputs, ctx.steps, create_graph=True)
        wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True) if wanted else ())
        return (None, None, *[next(grads) if need else None for need in needs])
