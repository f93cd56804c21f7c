"""PAD stage 2: trajectory matching with soft labels and shallow-layer masking.

PAD ("Prioritize Alignment in Dataset Distillation", Li et al., 2024) is DATM (Guo et al., ICLR 2024) with
two filters, and DATM is MTT (Cazenavette et al., CVPR 2022) with learnable soft labels and a growing
window of start epochs. Each step:

1. pick an expert trajectory from the buffer of stage 1 (:mod:`ddlight.methods.experts`) and a start
   epoch ``t``; the student starts from the expert's parameters ``theta_t``;
2. train the student ``syn_steps`` (N) SGD steps at the learnable rate ``syn_lr`` on DSA-augmented
   minibatches of the synthetic images with their soft labels, keeping the graph of every step;
3. loss = ||theta_N - theta_{t+M}||^2 / ||theta_t - theta_{t+M}||^2 over the parameters PAD keeps, and
   backpropagate through all N steps into the images, the soft labels and ``syn_lr``.

Reference code followed (NUS-HPC-AI-Lab/PAD ``distill/PAD.py``, and the ``distill/PAD_depth.py`` of its
history, which is the version that implements the paper's masking and matches the ``depth_ratio`` keys of
its ``configs/*/ConvIN/IPC*.yaml``; NUS-HPC-AI-Lab/DATM ``distill/DATM.py``; GeorgeCazenavette/
mtt-distillation ``distill.py`` and ``reparam_module.py``):

==============================  ==========================================================================
reference                       here
==============================  ==========================================================================
``ReparamModule`` flat params   ``torch.func.functional_call`` on views of one flat vector
``syn_lr`` linear, SGD          ``syn_lr`` parameter, linear, no clamp (the references clamp nothing)
  ``lr_lr``, momentum 0.5
images SGD ``lr_img``, mom 0.5  same, one optimizer with three parameter groups
labels SGD ``lr_y``,            ``lr_label``, ``momentum_label``
  ``Momentum_y``
``SoftCrossEntropy``            :func:`ddlight.ops.losses.soft_or_hard_ce` (same formula)
``pix_init:                     ``init: real``: per class, random real images the label expert classifies
  samples_predicted_correctly``   correctly; soft labels = mean logits of the experts that classify each
                                  image correctly, at epoch ``label_expert_epoch`` (``Label_Model_Timestamp``)
minibatches: ``randperm``       same schedule (chunks of a permutation, taken from the end, refilled)
  chunks, ``pop()``
``DiffAugment`` per step        :class:`~ddlight.ops.augment.DSA`, one op per batch, per-sample parameters
``Upper_Bound`` (Sequential_    ``max_start_bound``: ``current_max + int((max - current_max) * it /
  Generation)                     max_start_epoch_growth_steps)``, capped; start ``~ randint(min, bound)``
                                  with the bound exclusive, as ``np.random.randint``
``depth_ratio`` (PAD_depth.py)  :func:`fiem_mask`: the first ``int(depth_ratio * P)`` entries of the flat
                                  parameter vector (shallow layers, ``named_parameters`` order) leave both
                                  norms; default per IPC from PAD's CIFAR-10 configs (:data:`DEPTH_RATIOS`)
``threshold``: no update when   ``loss_threshold`` (same rule, applied without a host sync)
  the loss exceeds it
==============================  ==========================================================================

Deliberate differences:

* Experts and start epochs are drawn with replacement from a seeded stream (``mix_seed(seed, step,
  rank)``), not by walking shuffled replay-buffer files; a resumed run therefore sees the same draws.
* ``init: noise`` (which DATM's label code does not support: its noise branch leaves the labels undefined)
  starts each class's soft label at the mean logits of the real images of that class that the experts
  classify correctly.
* The correct-classification search draws a pool of ``init_pool`` (at least ``2 * ipc``) real images per
  class instead of scanning the whole class; if fewer than ``ipc`` are correct, wrongly classified ones
  fill the gap, with a warning.
* ``checkpoint_segments`` recomputes the unrolled steps segment by segment in the backward pass
  (:class:`_RecomputedSegment`); gradients are unchanged, memory drops from N steps of activations to one
  segment's plus the segment boundaries. The references hold all N steps on the GPU.

Memory: each unrolled step keeps the activations of a forward and of a backward (the student update
``theta - lr * grad`` is differentiated again), so the graph grows linearly with ``syn_steps`` and with
the minibatch. Measured for ConvNet-3 (width 128, instance norm) on 28x28 MNIST: about 2.9 MB per image
and step, i.e. 285 MB per step at 100 images; 20 steps kept 5.7 GB of graph (9.2 GB peak RSS), so 80
steps would need about 23 GB without segments and about a ninth of that with 9 segments. Measured with
20-image minibatches, peak above set-up without -> with segments: 12 steps / 4 segments 0.91 -> 0.30 GB,
36 steps / 6 segments 2.6 -> 0.54 GB, identical loss and gradients, time 1.9 -> 2.4 s and 8.4 -> 7.3 s
(a shared machine: the extra forward costs up to about a quarter more). ``memory/graph_saved_mb`` logs
the bytes autograd holds for the outer backward (outside recomputed segments) and ``memory/peak_mb`` the
process peak (RSS on CPU, allocator peak on CUDA).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.func import functional_call

from ddlight.methods.distiller import Distiller
from ddlight.methods.experts import ExpertBuffer
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed
from ddlight.ops.augment import DEFAULT_STRATEGY, DSA, DSAParams, strategy_for
from ddlight.ops.losses import soft_or_hard_ce
from ddlight.utils.classwise import class_index, sample_per_class

# PAD's configs/CIFAR-10/ConvIN/IPC{1,10,50,500,1000}.yaml: fraction of the flat parameter vector (from the
# first layer on) left out of the matching loss. PAD's argument: shallow layers carry low-level information
# that matching would inject into the images in excess; matching the deeper layers only embeds the
# higher-level patterns. The released values are not monotone in IPC; they are what the authors tuned.
DEPTH_RATIOS: dict[int, float] = {1: 0.0, 10: 0.5, 50: 0.25, 500: 0.5, 1000: 0.5}
EXPERTS_COMMAND = "python -m ddlight fit --config configs/experts_mnist.yaml"


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


def kept_per_parameter(names: Sequence[str], sizes: Sequence[int], mask: torch.Tensor) -> dict[str, int]:
    """How many entries of each named parameter the mask keeps (for logs and tests)."""
    kept = [int(m.sum()) for m in mask.split(list(sizes))]
    return dict(zip(names, kept, strict=True))


def matching_loss(
    student: torch.Tensor, start: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """||student - target||^2 / ||start - target||^2 over the entries ``mask`` keeps.

    The denominator makes the loss comparable across start epochs (early segments move the parameters
    much more than late ones): 1 means the student got no closer than where it started. The references
    also divide both norms by the parameter count, which cancels.
    """
    if mask is not None:
        student, start, target = student[mask], start[mask], target[mask]
    return (student - target).pow(2).sum() / (start - target).pow(2).sum()


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


def peak_memory_mb(device: torch.device) -> float:
    """Process peak so far: the CUDA allocator's peak on a GPU, the resident-set peak on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # not on Unix
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class IterationPlan:
    """Everything random about one distillation step, drawn up front so that recomputed segments
    recompute exactly the same augmentations and batches."""

    expert: int
    start_epoch: int
    bound: int
    batches: list[torch.Tensor]
    augs: list[DSAParams]


class PAD(Distiller):
    """Learns images, soft labels and the student learning rate by matching expert trajectories.

    Args:
        net: the student architecture; must be the experts' (names and shapes are checked against the
            buffer's manifest). Only its structure is used: the weights come from the buffer.
        buffer_dir: the expert buffer written by ``ExpertTrainer`` (``configs/experts_mnist.yaml``).
        ipc: images per class. init: ``real`` (correctly classified real images, DATM) or ``noise``.
        syn_steps: N, student steps on the synthetic set per iteration.
        expert_epochs: M, expert epochs the N steps must cover.
        min_start_epoch, current_max_start_epoch, max_start_epoch, max_start_epoch_growth_steps: the start
            epoch is drawn from ``[min_start_epoch, bound)``, the bound growing linearly from
            ``current_max_start_epoch`` to ``max_start_epoch`` over the first
            ``max_start_epoch_growth_steps`` iterations (DATM's ``expansion_end_epoch``, counted in
            iterations); growth_steps 0 or ``current_max_start_epoch`` None: ``max_start_epoch`` at once.
        lr_img, lr_label, lr_lr: SGD rates of images, soft labels and ``syn_lr`` (``lr_y``, ``lr_lr``).
        lr_teacher_init: the student rate ``syn_lr`` starts at (the experts' rate, ``lr_teacher``).
        momentum: of images and ``syn_lr`` (0.5 as released); momentum_label: of the labels (0.9).
        batch_syn: synthetic images per student step (None: all of them).
        soft_labels: learn (N, K) label logits (DATM/PAD); False keeps the hard class labels (MTT).
        depth_ratio: fraction of the flat parameter vector, from the first layer on, that leaves the loss
            (PAD's filtering of information embedding); None: :func:`default_depth_ratio` of ``ipc``.
        loss_threshold: skip the update of an iteration whose loss exceeds this (DATM/PAD ``threshold``);
            None never skips.
        label_expert_epoch: trajectory row whose parameters label the images (-1: the last epoch).
        label_experts: how many experts average into the soft labels (None: all in the buffer).
        init_pool: real candidates per class searched for correctly classified images.
        dsa_strategy: DSA ops; flip is dropped for digit datasets.
        checkpoint_segments: 0 keeps the whole unrolled graph; s > 0 recomputes it in s segments during
            backward (about sqrt(syn_steps) segments minimises memory).
        seed, grid_every, export_dir, checkpoint_every, check_every: as for every distiller (DataDAM).
    """

    method_name = "pad"

    def __init__(
        self,
        net: nn.Module,
        buffer_dir: str = "artifacts/experts_mnist",
        ipc: int = 10,
        init: str = "real",
        syn_steps: int = 20,
        expert_epochs: int = 2,
        min_start_epoch: int = 0,
        current_max_start_epoch: int | None = None,
        max_start_epoch: int = 2,
        max_start_epoch_growth_steps: int = 0,
        lr_img: float = 1000.0,
        lr_label: float = 2.0,
        lr_lr: float = 1e-5,
        lr_teacher_init: float = 0.01,
        momentum: float = 0.5,
        momentum_label: float = 0.9,
        batch_syn: int | None = None,
        soft_labels: bool = True,
        depth_ratio: float | None = None,
        loss_threshold: float | None = 1.0,
        label_expert_epoch: int = -1,
        label_experts: int | None = None,
        init_pool: int = 64,
        dsa_strategy: str = DEFAULT_STRATEGY,
        checkpoint_segments: int = 0,
        seed: int = 0,
        grid_every: int = 100,
        export_dir: str | None = None,
        checkpoint_every: int = 50,
        check_every: int = 10,
    ) -> None:
        super().__init__(ipc, init, seed, grid_every, export_dir, checkpoint_every, check_every)
        if init not in ("real", "noise"):
            raise ValueError(
                f"PAD supports init 'real' (correctly classified images) or 'noise', got {init!r}"
            )
        if syn_steps < 0 or expert_epochs < 1:
            raise ValueError(f"need syn_steps >= 0 and expert_epochs >= 1, got {syn_steps}, {expert_epochs}")
        current = max_start_epoch if current_max_start_epoch is None else current_max_start_epoch
        if not 0 <= min_start_epoch < current <= max_start_epoch:
            raise ValueError(
                "need 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch (start epochs are "
                f"drawn from [min, bound)); got {min_start_epoch}, {current_max_start_epoch}, "
                f"{max_start_epoch}"
            )
        if batch_syn is not None and batch_syn < 1:
            raise ValueError(f"batch_syn must be >= 1 or None, got {batch_syn}")
        if checkpoint_segments < 0:
            raise ValueError(f"checkpoint_segments must be >= 0, got {checkpoint_segments}")
        if label_experts is not None and label_experts < 1:
            raise ValueError(f"label_experts must be >= 1 or None, got {label_experts}")
        self.save_hyperparameters()
        self.depth_ratio = default_depth_ratio(ipc) if depth_ratio is None else float(depth_ratio)
        fiem_mask([1], self.depth_ratio)  # validate now, not after the buffer has been read
        # Only the structure is used; functional_call supplies the weights.
        self.net = net.requires_grad_(False)
        self.syn_lr = nn.Parameter(torch.tensor(float(lr_teacher_init)))
        self.label_logits: nn.Parameter | None = None
        self.buffer: ExpertBuffer | None = None
        # Threshold skips counted on the device (no per-step host sync), reported once at the end of fit.
        self._skipped: torch.Tensor | None = None
        self._iterations = 0
        self.dsa: DSA | None = None
        self._names: list[str] = [n for n, _ in net.named_parameters()]
        self._shapes: list[torch.Size] = [p.shape for p in net.parameters()]
        self._sizes: list[int] = [p.numel() for p in net.parameters()]
        # A buffer so that it follows the module to its device; not persistent: it is a function of hparams.
        self.register_buffer("fiem", fiem_mask(self._sizes, self.depth_ratio), persistent=False)
        self._pending_logits: torch.Tensor | None = None

    # ----------------------------------------------------------------------------------------- set up
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        check_num_classes(self.net, dm, "PAD")
        self.buffer = self.open_buffer()
        super().setup(stage)  # draws the initial images (and with them the soft labels) if not restored
        self.dsa = DSA(strategy_for(self.dataset_name, self.hparams.dsa_strategy))
        if self.hparams.soft_labels and self.label_logits is None:
            self.label_logits = nn.Parameter(self._pending_logits.float())
        self._pending_logits = None
        kept = kept_per_parameter(self._names, self._sizes, self.fiem)
        dropped = [n for n, k in kept.items() if k == 0]
        partial = [n for (n, k), s in zip(kept.items(), self._sizes, strict=True) if 0 < k < s]
        rank_zero_info(
            f"[ddlight] PAD: matching {int(self.fiem.sum())} of {len(self.fiem)} parameters "
            f"(depth_ratio {self.depth_ratio}); left out: {dropped or 'none'}"
            + (f", partly: {partial}" if partial else "")
        )

    def open_buffer(self) -> ExpertBuffer:
        hp = self.hparams
        root = Path(hp.buffer_dir)
        hint = f"create it first with `{EXPERTS_COMMAND}` (its model.init_args.buffer_dir: {hp.buffer_dir})"
        try:
            buf = ExpertBuffer(root)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"PAD needs an expert buffer: {err}; {hint}") from err
        if buf.num_completed == 0:
            raise FileNotFoundError(
                f"PAD needs an expert buffer: {root.resolve()} has no completed expert yet; {hint}"
            )
        mine = list(zip(self._names, [tuple(s) for s in self._shapes], strict=True))
        theirs = list(zip(buf.param_names, buf.param_shapes, strict=True))
        if mine != theirs:
            diff = next(
                (f"{a} vs {b}" for a, b in zip(mine, theirs, strict=False) if a != b),
                f"{len(mine)} vs {len(theirs)} tensors",
            )
            raise ValueError(
                f"PAD's net does not match the experts in {root} (student vs buffer: {diff}); use the net of "
                f"the buffer's manifest: {buf.manifest.get('net')}"
            )
        last_start = hp.max_start_epoch - 1
        if last_start + hp.expert_epochs > buf.epochs:
            raise ValueError(
                f"start epochs up to {last_start} plus expert_epochs {hp.expert_epochs} need trajectories of "
                f"{last_start + hp.expert_epochs} epochs; {root} has {buf.epochs}. Lower max_start_epoch to "
                f"at most {buf.epochs - hp.expert_epochs + 1} or expert_epochs."
            )
        if not -(buf.epochs + 1) <= hp.label_expert_epoch <= buf.epochs:
            raise ValueError(f"label_expert_epoch {hp.label_expert_epoch} outside 0..{buf.epochs} (or -1)")
        return buf

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            n: c.view(s) for n, c, s in zip(self._names, flat.split(self._sizes), self._shapes, strict=True)
        }

    @torch.no_grad()
    def expert_logits(self, images: torch.Tensor, experts: Sequence[int]) -> torch.Tensor:
        """(E, N, K) logits of ``experts`` at ``label_expert_epoch`` on ``images`` (eval mode, as DATM)."""
        device = self.trainer.strategy.root_device if self._trainer is not None else images.device
        net = copy.deepcopy(self.net).to(device).eval()
        x = images.to(device)
        out = []
        for e in experts:  # a handful of experts, once, at set-up
            row = self.buffer.load_expert(e, mmap=True)[self.hparams.label_expert_epoch].to(device)
            params = self._unflatten(row)
            out.append(torch.cat([functional_call(net, params, (c,)) for c in x.split(1024)]).float().cpu())
        return torch.stack(out)

    def initial_images(self, dm: Any) -> torch.Tensor:
        """Initial images, and (stashed for ``setup``) the soft labels that go with them."""
        hp = self.hparams
        if hp.init == "noise" and not hp.soft_labels:
            return super().initial_images(dm)
        k, ipc = dm.num_classes, hp.ipc
        gen = torch.Generator().manual_seed(mix_seed(hp.seed, 17))
        table, counts = class_index(dm.train_labels, k)
        pool = min(int(counts.min()), max(hp.init_pool, 2 * ipc))
        cand = self._normalize(dm, dm.train_images[sample_per_class(table, counts, pool, gen).flatten()])
        experts = self.buffer.completed[: hp.label_experts] if hp.soft_labels else self.buffer.completed[:1]
        logits = self.expert_logits(cand, experts)  # (E, K * pool, K)
        cls = torch.arange(k).repeat_interleave(pool)
        correct = logits.argmax(-1) == cls  # (E, K * pool)
        if hp.init == "noise":
            images = super().initial_images(dm)
            # A noise image carries no class evidence, so its label starts as its class's typical logits.
            per_class = logits.view(len(experts), k, pool, k).permute(0, 2, 1, 3).reshape(-1, k, k)
            ok = correct.view(len(experts), k, pool).permute(0, 2, 1).reshape(-1, k)
            self._pending_logits = _mean_where(per_class, ok).repeat_interleave(ipc, 0)
            return images
        # DATM's samples_predicted_correctly: the first expert decides which images qualify.
        first = correct[0].view(k, pool)
        cols = torch.argsort((~first).to(torch.int8), dim=1, stable=True)[:, :ipc]  # correct first
        wrong = int((~first.gather(1, cols)).sum())
        if wrong:
            rank_zero_warn(
                f"PAD init: {wrong} of {k * ipc} initial images are misclassified by expert {experts[0]} "
                f"(fewer than ipc={ipc} correct among {pool} candidates of some class); raise init_pool"
            )
        rows = (torch.arange(k)[:, None] * pool + cols).flatten()
        self._pending_logits = _mean_where(logits[:, rows], correct[:, rows])
        return cand[rows].clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        if self.label_logits is None and "label_logits" in state:
            self.label_logits = nn.Parameter(torch.empty_like(state["label_logits"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        groups = [{"params": [self.images], "lr": hp.lr_img, "momentum": hp.momentum, "name": "images"}]
        if hp.soft_labels:
            groups.append(
                {
                    "params": [self.label_logits],
                    "lr": hp.lr_label,
                    "momentum": hp.momentum_label,
                    "name": "labels",
                }
            )
        groups.append({"params": [self.syn_lr], "lr": hp.lr_lr, "momentum": hp.momentum, "name": "syn_lr"})
        return torch.optim.SGD(groups)

    # ------------------------------------------------------------------------------------------ steps
    def max_start_bound(self, step: int) -> int:
        """Exclusive upper bound of the start epoch at iteration ``step`` (DATM's ``Upper_Bound``)."""
        hp = self.hparams
        if hp.current_max_start_epoch is None or hp.max_start_epoch_growth_steps <= 0:
            return hp.max_start_epoch
        cur, top = hp.current_max_start_epoch, hp.max_start_epoch
        return min(top, cur + int((top - cur) * step / hp.max_start_epoch_growth_steps))

    def plan(self, step: int, generator: torch.Generator) -> IterationPlan:
        hp = self.hparams
        completed = self.buffer.completed
        expert = completed[int(torch.randint(len(completed), (), generator=generator))]
        bound = self.max_start_bound(step)
        start = int(torch.randint(hp.min_start_epoch, bound, (), generator=generator))
        n = self.images.shape[0]
        batches = minibatch_schedule(n, hp.batch_syn or n, hp.syn_steps, generator)
        augs = [self.dsa.sample(len(b), generator, device=self.device, share_op=True) for b in batches]
        return IterationPlan(expert, start, bound, [b.to(self.device) for b in batches], augs)

    def _segment(
        self,
        flat: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        lr: torch.Tensor,
        steps: list[tuple[torch.Tensor, DSAParams]],
        create_graph: bool = True,
    ) -> torch.Tensor:
        """Student SGD steps from ``flat``; ``create_graph=False`` gives the values only (no graph kept
        across steps), which is all the forward of a recomputed segment needs."""
        with torch.enable_grad():
            for idx, aug in steps:
                x = self.dsa.apply(images[idx], aug)
                out = functional_call(self.net, self._unflatten(flat), (x,))
                ce = soft_or_hard_ce(out, labels[idx])
                (grad,) = torch.autograd.grad(ce, flat, create_graph=create_graph)
                flat = flat - lr * grad
                if not create_graph:
                    flat = flat.detach().requires_grad_(True)
        return flat if create_graph else flat.detach()

    def unroll(self, start: torch.Tensor, plan: IterationPlan) -> torch.Tensor:
        """The student after ``syn_steps`` differentiable SGD steps from ``start``."""
        steps = list(zip(plan.batches, plan.augs, strict=True))
        labels = self.label_logits if self.label_logits is not None else self.labels
        flat = start.detach().clone().requires_grad_(True)
        bounds = segment_bounds(len(steps), self.hparams.checkpoint_segments)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if self.hparams.checkpoint_segments > 0:
                flat = _RecomputedSegment.apply(
                    self._segment, steps[a:b], flat, self.images, labels, self.syn_lr
                )
            else:
                flat = self._segment(flat, self.images, labels, self.syn_lr, steps[a:b])
        return flat

    def iteration_loss(self, plan: IterationPlan) -> tuple[torch.Tensor, float]:
        """The matching loss of one plan and the MB autograd saves for its backward."""
        traj = self.buffer.load_expert(plan.expert, mmap=True)
        start = traj[plan.start_epoch].to(self.device)
        target = traj[plan.start_epoch + self.hparams.expert_epochs].to(self.device)
        saved = SavedBytes()
        with saved:
            loss = matching_loss(self.unroll(start, plan), start, target, self.fiem)
        return loss, saved.megabytes

    def _guarded_step(self, opt: Any, ok: torch.Tensor | None) -> None:
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

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # The data module's batch is not used: PAD's only data are the expert trajectories and the set.
        t0 = time.perf_counter()
        hp = self.hparams
        step = int(self.global_step)
        gen = torch.Generator().manual_seed(mix_seed(hp.seed, 31, step, self.global_rank))
        plan = self.plan(step, gen)
        loss, graph_mb = self.iteration_loss(plan)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        ok = None if hp.loss_threshold is None else loss.detach() <= hp.loss_threshold
        self._guarded_step(opt, ok)
        self.distill_seconds += time.perf_counter() - t0

        logs: dict[str, Any] = {
            "distill/loss": loss.detach(),
            "distill/syn_lr": self.syn_lr.detach(),
            "distill/start_epoch": float(plan.start_epoch),
            "distill/start_epoch_bound": float(plan.bound),
            "distill/expert": float(plan.expert),
            "memory/graph_saved_mb": graph_mb,
            "memory/peak_mb": peak_memory_mb(self.device),
        }
        self._iterations += 1
        if ok is not None:
            logs["distill/skipped"] = (~ok).float()
            self._skipped = (~ok).long() + (0 if self._skipped is None else self._skipped)
        if self.label_logits is not None:
            with torch.no_grad():
                logp = self.label_logits.log_softmax(-1)
                logs["distill/label_entropy"] = -(logp.exp() * logp).sum(-1).mean()
        self.log_dict(logs)
        self.log("time/distill_seconds", self.distill_seconds)
        self.log("distill/loss_bar", loss.detach(), prog_bar=True, logger=False)
        if step == 0:
            rank_zero_info(
                f"[ddlight] PAD: the unrolled graph of {hp.syn_steps} steps keeps {graph_mb:.1f} MB for "
                f"backward (checkpoint_segments={hp.checkpoint_segments}); peak so far "
                f"{logs['memory/peak_mb']:.0f} MB"
            )
        self.maybe_log_grid()
        return loss.detach()

    def on_train_end(self) -> None:
        if self._skipped is not None and self._iterations:
            skipped = int(self._skipped)
            rank_zero_info(
                f"[ddlight] PAD: loss_threshold {self.hparams.loss_threshold} skipped {skipped} of "
                f"{self._iterations} iterations"
            )
            if skipped == self._iterations:
                rank_zero_warn(
                    "PAD: every iteration's loss exceeded loss_threshold, so the synthetic set never "
                    "changed. A noise initialisation typically starts above 1: set loss_threshold: null."
                )
        super().on_train_end()

    # ---------------------------------------------------------------------------------------- export
    def export_labels(self) -> torch.Tensor:
        if self.label_logits is None:
            return super().export_labels()
        return self.label_logits.detach().float().cpu().clone()

    def export_extra(self) -> dict[str, Any]:
        # DATM/PAD evaluate their sets at ``args.lr_net = syn_lr``; ddlight's evaluator does so with
        # ``lr: learned`` and otherwise keeps its configured protocol rate.
        return {**super().export_extra(), "syn_lr": float(self.syn_lr.detach())}


def _mean_where(values: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (E, N, K) over E where ``ok`` (E, N) holds; the plain mean where it never does
    (DATM would divide by zero there)."""
    w = ok.to(values.dtype).unsqueeze(-1)
    count = w.sum(0)
    return torch.where(count > 0, (values * w).sum(0) / count.clamp(min=1), values.mean(0))


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
        steps: list[tuple[torch.Tensor, DSAParams]],
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
