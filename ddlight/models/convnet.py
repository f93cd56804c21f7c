"""The ConvNet used throughout dataset distillation (DC/DSA/DM/MTT/DataDAM/PAD).

Conventions kept from the field so results are comparable with published numbers:
blocks of 3x3 conv -> norm -> activation -> 2x2 pool; "instancenorm" is ``GroupNorm(C, C)`` with
affine parameters (the field's instance norm, which is learnable); a 28x28 input is padded to 32x32 by
the first conv (padding 3) so that feature maps go 32 -> 16 -> 8 -> 4.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_info
from torch import nn

from ddlight.models.kernels import AvgPool2x2, MaskReLU

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTS = ("relu", "sigmoid", "leakyrelu")
POOLS = ("avgpooling", "maxpooling", "none")


def make_norm(norm: str, channels: int, spatial: tuple[int, int]) -> nn.Module:
    """Normalisation layer by the field's names (shared by ConvNet, VGG and ResNet)."""
    if norm == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "layernorm":
        return nn.LayerNorm([channels, *spatial], elementwise_affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def make_act(act: str, lean: bool = False) -> nn.Module:
    if act == "relu":
        return MaskReLU(lean)
    if act == "sigmoid":
        return nn.Sigmoid()
    if act == "leakyrelu":
        return nn.LeakyReLU(0.01)
    raise ValueError(f"act must be one of {ACTS}, got {act!r}")


def make_pool(pooling: str, lean: bool = False) -> nn.Module:
    if pooling == "avgpooling":
        return AvgPool2x2(lean)
    if pooling == "maxpooling":
        return nn.MaxPool2d(2, 2)
    if pooling == "none":
        return nn.Identity()
    raise ValueError(f"pooling must be one of {POOLS}, got {pooling!r}")


def use_lean_graph(net: nn.Module, twice_differentiated: bool) -> nn.Module:
    """Lean graphs for the ConvNets in ``net`` that left ``lean_graph`` to their user (``None``) exactly
    when their graph is kept and differentiated twice: trajectory matching's unrolled student steps call
    this with ``True`` and its graph-free pass with ``False``, as does every copy trained first-order from
    such a template (the evaluator's runs, PAD's EL2N networks). DC/DSA keep ATen's ops: their 50-epoch
    first-order inner loops dominate and their graphs are small. Returns ``net``."""
    for convnet in _convnets(net):
        if convnet.lean_graph is None:
            for op in convnet.modules():
                if isinstance(op, (MaskReLU, AvgPool2x2)):
                    op.lean = twice_differentiated
    return net


def compile_training(net: nn.Module, on: bool = True) -> nn.Module:
    """Lets the ConvNets in ``net`` whose ``compile`` is ``"auto"`` run their graph forwards (and so their
    backward) through torch.compile too, on the CPU. Only code that trains a network first-order, long
    enough to repay the compile, says so (the evaluation's runs, :class:`~ddlight.evaluation.Runs`):
    inductor's fused backward recomputes activations, and a ReLU whose input rounds across zero there
    changes its gradient, noise far below a trained network's run-to-run spread but not "the same images"
    for a distiller, whose synthetic side stays eager. Returns ``net``."""
    for convnet in _convnets(net):
        convnet.compile_training = on
    return net


def _convnets(net: nn.Module) -> Iterator[ConvNet]:
    return (m for m in net.modules() if isinstance(m, ConvNet))


def as_size(im_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(im_size, int):
        return (im_size, im_size)
    h, w = im_size
    return (int(h), int(w))


class ConvNet(nn.Module):
    """ConvNet-D with width W.

    ``forward_blocks`` returns every block's activation (after the activation, before pooling) and the
    flattened embedding in one pass: DataDAM matches attention maps of all blocks and the embedding,
    and getting both from one forward avoids hooks and a second pass.

    ``channels_last`` runs the blocks in NHWC (weights and inputs): on large maps with few channels
    (MHIST's 224x224 at width 32) it sped up the real forward (``benchmarks/mhist_speed.py``), but group
    norm's backward is much slower in NHWC, so a DataDAM step with NHWC everywhere was slower than NCHW
    (figures in docs/performance.md).
    ``"no_grad"`` takes NHWC only for forwards that record no graph (DataDAM's real side, test passes) and
    NCHW where a backward follows. Values agree with NCHW to float tolerance, the embedding is flattened in
    the usual (C, H, W) order, so the classifier and every caller see no change.

    ``compile="no_grad"`` runs each micro-batch of a forward that records no graph (DataDAM's and DM's
    real side, test passes) through ``torch.compile``: inductor fuses the memory-bound norm, activation,
    attention reduction and pooling after each convolution, which in the 32x32 first block cost as much as
    the convolutions (``benchmarks/distill_speed.py --compile no_grad``). Its values agree with eager as
    closely as eager agrees with float64. ``compile=True`` compiles every forward, graph and backward too
    (the evaluator's training, ``benchmarks/eval_speed.py --compile``): inductor recomputes activations in
    its fused backward, and the few ReLUs whose input rounds across zero differently change their gradient
    (DataDAM's image gradients drift from float64 far more than eager's; docs/performance.md), which is noise
    for training a network but not "the same images", so distillers keep ``no_grad``. Compiled graphs cannot
    be differentiated twice: DC/DSA and trajectory matching refuse ``True``
    (:func:`~ddlight.models.checks.refuse_compiled_graphs`). The first call per input shape compiles (tens
    of seconds on 2 cores, then cached on disk), so it pays for long runs, not for tests: ``"auto"``
    (default) is ``no_grad`` on the CPU from the ``compile_after``-th graph-free call of this network on,
    eager before (the quick start and the test suite never reach it) and for good if compiling fails
    (a warning says why); it is ``True`` from the start for a network that an evaluation trains long
    enough to repay the compile (:func:`compile_training`).

    ``lean_graph`` keeps a bool mask of each ReLU in the autograd graph and no input of the 2x2 pooling
    (:class:`MaskReLU`, :class:`AvgPool2x2`): the same values and gradients to rounding order, a quarter
    less graph per step for the twice-differentiated students of trajectory matching, where it was also
    faster; in first-order training (the evaluator, experts, DataDAM/DM) the mask's backward made
    a step slower (docs/performance.md). ``None`` (default) leaves the choice to the code that knows how
    the graph is used (:func:`use_lean_graph`); ``True``/``False`` fix it.
    """

    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pooling: str = "avgpooling",
        im_size: int | Sequence[int] = 28,
        micro_batch: int = 16,
        channels_last: bool | Literal["no_grad"] = False,
        compile: bool | Literal["no_grad", "auto"] = "auto",
        compile_after: int = 300,
        lean_graph: bool | None = None,
    ) -> None:
        super().__init__()
        if channels_last not in (True, False, "no_grad"):
            raise ValueError(f"ConvNet channels_last must be true, false or 'no_grad', got {channels_last!r}")
        if compile not in (True, False, "no_grad", "auto"):
            raise ValueError(f"ConvNet compile must be true, false, 'no_grad' or 'auto', got {compile!r}")
        self.channels_last = channels_last
        # not ``self.compile``: that would hide nn.Module.compile(), which compiles the whole module in place
        self.compile_mode = compile
        self.compile_after = compile_after
        self.graph_free_calls = 0  # counts toward compile_after ("auto")
        self.compile_training = False  # "auto" compiles graph forwards too: compile_training()
        h, w = as_size(im_size)
        # Per-sample norms make a chunked forward exact; batch norm's statistics would change, so it never
        # chunks.
        self.micro_batch = micro_batch if norm != "batchnorm" else 0
        first_pad = 1
        if (h, w) == (28, 28):
            # The field pads 28x28 digits to 32x32 so MNIST shares CIFAR's 4x4 final feature map.
            first_pad, h, w = 3, 32, 32
        blocks = []
        in_ch = channel
        for d in range(depth):
            conv = nn.Conv2d(in_ch, width, kernel_size=3, padding=first_pad if d == 0 else 1)
            blocks.append(
                nn.Sequential(conv, make_norm(norm, width, (h, w)), make_act(act, bool(lean_graph)))
            )
            in_ch = width
            if pooling != "none":
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"ConvNet depth {depth} pools a {as_size(im_size)} input below 1x1; use a smaller depth, "
                "a larger im_size or pooling='none'"
            )
        self.blocks = nn.ModuleList(blocks)
        self.pool = make_pool(pooling, bool(lean_graph))
        self.lean_graph = lean_graph
        self.embed_dim = width * h * w
        self.feature_shape = (width, h, w)
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self.num_classes = num_classes
        if channels_last is True:  # "no_grad" keeps NCHW weights: an NHWC input alone makes oneDNN run NHWC
            self.blocks.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = self.channels_last is True or (self.channels_last == "no_grad" and not torch.is_grad_enabled())
        return x.contiguous(memory_format=torch.channels_last) if nhwc else x

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Micro-batches for a CPU forward, or None to run the batch whole.

        On CPU the norm/activation/pool passes are memory-bound: a 16-image chunk keeps a block's
        activations in cache, which was 2-3x faster per image than one large batch on 2-core
        CPUs (benchmarks/distill_speed.py). GPUs prefer the whole batch. Under bf16 autocast a chunk
        twice as large: its convolutions' activations take half the bytes, and on a CPU with bf16 units
        (AMX) the 16-image chunks left the step dominated by per-chunk norm and pooling passes (timings in
        docs/performance.md).
        """
        mb = self.micro_batch
        half = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") != torch.float32
        if half and x.device.type == "cpu":
            mb *= 2
        if mb <= 0 or x.device.type != "cpu" or x.shape[0] <= mb:
            return None
        return list(x.split(mb))

    def forward_blocks(
        self, x: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Block activations (each passed through ``reduce`` if given) and the embedding.

        ``reduce`` runs as soon as a block is computed, so a caller that only needs a summary (DataDAM's
        attention maps) never holds all full-size activations of a large real batch at once.
        """
        compiled = self._compiled_now(x)
        chunks = self._chunks(x)
        if chunks is None:
            return self._run("blocks", compiled, self._layout(x), reduce)
        parts = [self._run("blocks", compiled, self._layout(c), reduce) for c in chunks]
        acts = [torch.cat(layer) for layer in zip(*(p[0] for p in parts), strict=True)]
        return acts, torch.cat([p[1] for p in parts])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self._compiled_now(x)
        chunks = self._chunks(x)
        if chunks is None:
            return self._run("embed", compiled, self._layout(x))
        return torch.cat([self._run("embed", compiled, self._layout(c)) for c in chunks])

    def _run(self, kind: Literal["blocks", "embed"], compiled: bool, x: torch.Tensor, *args: Any) -> Any:
        if compiled and self.compile_mode == "auto":
            try:
                return _compiled(kind)(self.blocks, self.pool, x, *args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: stay eager for good
                self.compile_mode = False
                warnings.warn(
                    f"ConvNet compile 'auto' stays eager: torch.compile failed: {err!s:.300}", stacklevel=3
                )
        elif compiled and self.compile_mode:  # not after "auto" fell back in an earlier chunk
            return _compiled(kind)(self.blocks, self.pool, x, *args)
        return (_blocks if kind == "blocks" else _embed)(self.blocks, self.pool, x, *args)

    def _compiled_now(self, x: torch.Tensor) -> bool:
        """Whether this call's forwards run compiled (one decision per call, before it is chunked)."""
        # fvcore counts FLOPs by torch.jit.trace, which cannot trace a compiled function
        if torch.jit.is_tracing() or self.compile_mode is False:
            return False
        if self.compile_mode is True:
            return True
        if torch.is_grad_enabled():
            return self.compile_mode == "auto" and self.compile_training and x.device.type == "cpu"
        if self.compile_mode == "no_grad":
            return True
        if x.device.type != "cpu":  # "auto" was measured on CPUs only
            return False
        self.graph_free_calls += 1
        if self.graph_free_calls == self.compile_after + 1:  # the pause that follows needs a reason
            rank_zero_info(
                "[ddlight] ConvNet compile 'auto': compiling the graph-free forward after "
                f"{self.compile_after} eager calls (seconds; cached on disk; configs/overlays/eager.yaml "
                "switches it off)"
            )
        return self.graph_free_calls > self.compile_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def _blocks(
    blocks: nn.ModuleList,
    pool: nn.Module,
    x: torch.Tensor,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    acts = []
    for block in blocks:
        x = block(x)
        acts.append(x if reduce is None else reduce(x))
        x = pool(x)
    return acts, x.flatten(1)


def _embed(blocks: nn.ModuleList, pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = pool(block(x))
    return x.flatten(1)


@functools.cache
def _compiled(kind: str) -> Callable[..., Any]:
    """``torch.compile`` of :func:`_blocks` or :func:`_embed`, made on first use (importing dynamo costs
    seconds that a run without ``compile`` should not pay). Modules are arguments, not closures, so every
    ConvNet of one architecture (each re-drawn random network, each evaluation run) shares one graph with
    its weights as inputs; ``dynamic=False`` since a run sees one or two chunk shapes (full, remainder)."""
    return torch.compile(_blocks if kind == "blocks" else _embed, dynamic=False)
