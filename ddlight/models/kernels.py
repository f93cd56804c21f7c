"""CPU autograd kernels for ConvNet's ReLU and 2x2 average pooling: faster than ATen's NCHW pooling, and
lean (saving a bool mask or nothing) where a graph is kept to be differentiated twice.

Which ConvNets run lean is decided by :func:`ddlight.models.convnet.use_lean_graph`; measurements are in
docs/performance.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _MaskReLU(torch.autograd.Function):
    """ReLU whose graph keeps a bool mask (a byte an element) instead of the float output; its backward
    ``grad * mask`` is linear in ``grad`` and saves only that mask for a second derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(output > 0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (mask,) = ctx.saved_tensors
        return grad * mask


class MaskReLU(nn.ReLU):
    """``nn.ReLU`` (same values, same gradients to rounding order) whose autograd graph, when ``lean``,
    holds a bool mask instead of the float output: with the 2x2 pooling below not keeping its input
    either, nothing else holds that output, so an unrolled student (trajectory matching) or a
    gradient-matching step (DC/DSA) keeps three quarters less of it per block. Not lean, it is ATen's
    ReLU: a first-order backward through the bool mask (a type-promoting multiply) cost more than
    ``threshold_backward`` on the float output. Inference, ``torch.compile`` and ``torch.jit`` tracing run
    the plain op, which inductor fuses and fvcore counts."""

    def __init__(self, lean: bool = False) -> None:
        super().__init__()
        self.lean = lean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if not self.lean or traced or not (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        return _MaskReLU.apply(x)


class _PairSums(torch.autograd.Function):
    """2x2 average pooling as two strided adds (column pairs, then row pairs); the backward spreads the
    gradient/4 over each window with one expand-copy. Written with torch ops, so it differentiates twice
    (DC/DSA's and trajectory matching's second order)."""

    generate_vmap_rule = True  # torch.func (DC/DSA's per-class gradients) runs it per class

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
        x = x[..., : 2 * h2, : 2 * w2]  # odd sizes floor, as avg_pool2d
        cols = x[..., 0::2] + x[..., 1::2]
        return (cols[..., 0::2, :] + cols[..., 1::2, :]).mul_(0.25)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.in_hw = inputs[0].shape[-2:]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        n, c, h2, w2 = grad.shape
        spread = (grad * 0.25)[:, :, :, None, :, None].expand(n, c, h2, 2, w2, 2)
        spread = spread.reshape(n, c, 2 * h2, 2 * w2)
        h, w = ctx.in_hw
        return nn.functional.pad(spread, (0, w - 2 * w2, 0, h - 2 * h2))


class _DepthwiseMean(torch.autograd.Function):
    """2x2 average pooling through oneDNN's depthwise convolution whose backward is :class:`_PairSums`'
    spread: ``conv2d`` would keep its input for a weight gradient nobody needs (the weight is constant),
    which in a graph that is differentiated twice is the block's whole float activation."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        weight = x.new_full((1, 1, 2, 2), 0.25).expand(x.shape[1], 1, 2, 2)
        with torch.autocast("cpu", enabled=False):
            return nn.functional.conv2d(x, weight, stride=2, groups=x.shape[1])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.in_hw = inputs[0].shape[-2:]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # a graph of this backward is kept (create_graph): save nothing
            return _PairSums.backward(ctx, grad)
        # first order: the transposed depthwise convolution, oneDNN's kernel as ATen's own backward uses
        # (the pair-sum spread's strided copy made a training step of the evaluator ~25 % slower)
        c, (h, w) = grad.shape[1], ctx.in_hw
        weight = grad.new_full((c, 1, 2, 2), 0.25)
        spread = nn.functional.conv_transpose2d(grad, weight, stride=2, groups=c)
        if spread.shape[-2:] == (h, w):
            return spread
        return nn.functional.pad(spread, (0, w - spread.shape[-1], 0, h - spread.shape[-2]))


class AvgPool2x2(nn.AvgPool2d):
    """The field's 2x2 average pooling (stride 2) with faster CPU kernels than ATen's NCHW ``avg_pool2d``,
    whose forward + backward was a third of a bf16 ConvNet-3 training step (torch.profiler). Timed against
    both alternatives (docs/performance.md), depthwise convolution won for small fp32 maps and strided pair
    sums everywhere else. So: fp32 maps up to 64x64 through oneDNN's depthwise convolution (the same
    values: sums of four times an exact power of two), everything else as pair sums (fp32 values within
    rounding order, 2e-7; bf16 rounds its partial sums, within one bf16 step). Inside ``torch.compile`` the
    plain op, which inductor fuses with the norm and activation, and under ``torch.jit`` tracing (fvcore),
    which would count the depthwise form as convolution MACs."""

    def __init__(self, lean: bool = False) -> None:
        super().__init__(2, 2)
        self.lean = lean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if x.device.type != "cpu" or x.dim() != 4 or traced:
            return super().forward(x)
        if x.dtype == torch.float32 and x.shape[-2] * x.shape[-1] <= 64 * 64:
            # called directly, the Function's forward is the plain convolution, recorded by autograd as ATen's
            return _DepthwiseMean.apply(x) if self.lean else _DepthwiseMean.forward(x)
        return _PairSums.apply(x)
