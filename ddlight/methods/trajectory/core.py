"""Trajectory matching, the machinery of MTT, DATM and PAD (stage 2; stage 1 is
:mod:`~ddlight.methods.trajectory.experts`).

MTT (Cazenavette et al., CVPR 2022) matches a student trained on the synthetic set to expert trajectories;
DATM (Guo et al., ICLR 2024) adds learnable soft labels, initialised from correctly classified real images,
a growing window of start epochs and a loss threshold; PAD ("Prioritize Alignment in Dataset
Distillation", Li et al., 2024) is DATM with two filters, FIEX (the experts' curriculum, stage 1) and FIEM
(shallow parameters leave the loss). :class:`TrajectoryMatching` implements the superset;
:class:`~ddlight.methods.trajectory.mtt.MTT`, :class:`~ddlight.methods.trajectory.datm.DATM` and
:class:`~ddlight.methods.trajectory.pad.PAD` are the named methods, each fixing what its paper leaves out.
Each step:

1. pick an expert trajectory from the buffer of stage 1 and a start epoch ``t``; the student starts from
   the expert's parameters ``theta_t``;
2. train the student ``syn_steps`` (N) SGD steps at the learnable rate ``syn_lr`` on DSA-augmented
   minibatches of the synthetic images with their (soft) labels, keeping the graph of every step;
3. loss = ||theta_N - theta_{t+M}||^2 / ||theta_t - theta_{t+M}||^2 over the parameters kept, and
   backpropagate through all N steps into the images, the soft labels and ``syn_lr``.

How each piece maps onto the reference code (PAD ``distill/PAD.py`` and ``PAD_depth.py``, DATM
``distill/DATM.py``, MTT ``distill.py``): docs/parity.md, "Trajectory family".

Deliberate differences:

* Experts and start epochs are drawn with replacement from a seeded stream (``mix_seed(seed, step,
  rank)``), not by walking shuffled replay-buffer files; a resumed run therefore sees the same draws.
* The initialisation (``init: noise`` with soft labels, the ``init_pool`` search): see
  :mod:`~ddlight.methods.trajectory.labels`.
* ``checkpoint_segments`` recomputes the unrolled steps segment by segment in the backward pass
  (:mod:`~ddlight.methods.trajectory.unroll`, which also records what the graph costs); gradients are
  unchanged, memory drops from N steps of activations to one segment's plus the segment boundaries. The
  references hold all N steps on the GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ddlight.data.base import dataset_name
from ddlight.methods.distiller import Distiller, Init
from ddlight.methods.trajectory.buffer import (
    ExpertBuffer,
    check_fits,
    check_same_data,
    open_completed,
    parameter_layout,
    unflatten_parameters,
)
from ddlight.methods.trajectory.checks import check_settings
from ddlight.methods.trajectory.fiem import default_depth_ratio, fiem_mask, loss_ratio_mask, mask_summary
from ddlight.methods.trajectory.labels import (
    candidates,
    class_typical_labels,
    correct_start,
    expert_logits,
    given_logits,
)
from ddlight.methods.trajectory.threshold import guarded_step, report_skips
from ddlight.methods.trajectory.unroll import (
    DEFAULT_MEMORY_BUDGET_MB,
    IterationPlan,
    SavedBytes,
    minibatch_schedule,
    segments_from_budget,
    student_steps,
    unroll_student,
)
from ddlight.methods.trajectory.window import start_bound
from ddlight.models.checks import check_num_classes
from ddlight.models.convnet import use_lean_graph
from ddlight.models.init import mix_seed
from ddlight.ops.augment import DEFAULT_STRATEGY, DSA, strategy_for
from ddlight.ops.losses import matching_loss
from ddlight.utils.jsonable import jsonable
from ddlight.utils.memory import peak_memory_mb

EXPERTS_COMMAND = "python -m ddlight fit --config configs/{dataset}/experts.yaml"


class TrajectoryMatching(Distiller):
    """Learns images, (soft) labels and the student learning rate by matching expert trajectories. Use it
    through :class:`~ddlight.methods.trajectory.mtt.MTT`, :class:`~ddlight.methods.trajectory.datm.DATM` or
    :class:`~ddlight.methods.trajectory.pad.PAD`; every switch below is PAD's (its defaults are PAD's).

    Args:
        net: the student architecture; must be the experts' (names and shapes are checked against the
            buffer's manifest). Only its structure is used: the weights come from the buffer.
        buffer_dir: the expert buffer written by ``Experts`` (``configs/mnist/experts.yaml``).
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
        loss_ratio: fraction of the flat parameter vector, those the student already matches best, that
            leaves the loss each iteration: the FIEM of the released ``distill/PAD.py``
            (:func:`.loss_ratio_mask`); 0 keeps them all. Applied after ``depth_ratio``'s mask.
        loss_threshold: skip the update of an iteration whose loss exceeds this (DATM/PAD ``threshold``);
            None never skips.
        label_expert_epoch: trajectory row whose parameters label the images (-1: the last epoch).
        label_experts: how many experts average into the soft labels (None: all in the buffer).
        init_pool: real candidates per class searched for correctly classified images.
        dsa_strategy: DSA ops; ``auto`` (default) drops flip for digit datasets (``strategy_for``).
        checkpoint_segments: None (default) lets ``memory_budget_mb`` choose; 0 keeps the whole unrolled
            graph; s > 0 recomputes it in s segments during backward (about sqrt(syn_steps) segments
            minimises memory). memory_budget_mb: the fewest segments whose graph fits this many MB, from one
            step's graph measured at the first iteration (:func:`.segments_for_budget`: 0 segments when the
            whole graph fits); the default keeps a 24 GB machine's distillation near 3 GB of peak memory.
            The gradients are the same either way, up to float reassociation.
        seed, grid_every, export_dir, checkpoint_every, check_every: as for every distiller (DataDAM).
    """

    method_name = "trajectory"
    needs_experts = True
    # DATM's ``samples_predicted_correctly``: real init keeps images the first expert classifies correctly;
    # MTT draws them at random.
    init_correct = True

    def __init__(
        self,
        net: nn.Module,
        buffer_dir: str = "artifacts/experts_mnist",
        ipc: int = 10,
        init: Init = "real",
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
        loss_ratio: float = 0.0,
        loss_threshold: float | None = 1.0,
        label_expert_epoch: int = -1,
        label_experts: int | None = None,
        init_pool: int = 64,
        dsa_strategy: str = DEFAULT_STRATEGY,
        checkpoint_segments: int | None = None,
        memory_budget_mb: float | None = DEFAULT_MEMORY_BUDGET_MB,
        seed: int = 0,
        grid_every: int = 100,
        export_dir: str | None = None,
        checkpoint_every: int = 50,
        check_every: int = 10,
        init_from: str | None = None,
    ) -> None:
        # MTT/DATM fix some arguments and leave them out of their signatures (so out of hparams, what a
        # checkpoint re-instantiates from); ``settings`` is every argument the method runs with.
        settings = SimpleNamespace(
            **{k: v for k, v in locals().items() if k not in ("self", "__class__", "net")}
        )
        super().__init__(ipc, init, seed, grid_every, export_dir, checkpoint_every, check_every, init_from)
        check_settings(net, settings, type(self).__name__)
        self.settings = settings
        self.depth_ratio = default_depth_ratio(ipc) if depth_ratio is None else float(depth_ratio)
        fiem_mask([1], self.depth_ratio)  # validate now, not after the buffer has been read
        loss_ratio_mask(torch.zeros(1), torch.zeros(1), loss_ratio)
        # Only the structure is used; functional_call supplies the weights.
        self.net = use_lean_graph(net, twice_differentiated=True).requires_grad_(False)
        self.syn_lr = nn.Parameter(torch.tensor(float(lr_teacher_init)))
        self.label_logits: nn.Parameter | None = None
        self.buffer: ExpertBuffer | None = None
        # Threshold skips counted on the device (no per-step host sync), reported once at the end of fit.
        self._skipped: torch.Tensor | None = None
        self._iterations = 0
        self._names, self._shapes, self._sizes = parameter_layout(net)
        # A buffer so that it follows the module to its device; not persistent: the settings determine it.
        self.register_buffer("fiem", fiem_mask(self._sizes, self.depth_ratio), persistent=False)
        self._pending_logits: torch.Tensor | None = None
        self._plan: Any = None  # this step's plan, ok flag and graph size: set by distill_losses/apply_update
        self._ok: torch.Tensor | None = None
        self._graph_mb = 0.0
        self._budget_segments: int | None = None  # chosen at the first iteration from memory_budget_mb
        self._segments = 0  # what the last iteration used

    # ----------------------------------------------------------------------------------------- set up
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        check_num_classes(self.net, dm, type(self).__name__)
        self.buffer = self.open_buffer()
        super().setup(stage)  # draws the initial images (and with them the soft labels) if not restored
        self.dsa = DSA(strategy_for(self.settings.dsa_strategy, self.trainer.datamodule.flip_invariant))
        if self.settings.soft_labels and self.label_logits is None:
            self.label_logits = nn.Parameter(self._pending_logits.float())
        self._pending_logits = None
        summary = mask_summary(self._names, self._sizes, self.fiem, self.depth_ratio)
        if self.settings.loss_ratio > 0:
            summary += f"; per iteration the {self.settings.loss_ratio:g} closest to the target (loss_ratio)"
        rank_zero_info(f"[ddlight] {self.method_name.upper()}: {summary}")

    def open_buffer(self) -> ExpertBuffer:
        hp, dm = self.settings, self.trainer.datamodule
        name = dataset_name(dm)
        command = EXPERTS_COMMAND.format(dataset=name)
        hint = f"create it first with `{command}` (model.init_args.buffer_dir: {hp.buffer_dir})"
        buf = open_completed(Path(hp.buffer_dir), hint)
        check_fits(
            buf, self._names, self._shapes, hp.max_start_epoch, hp.expert_epochs, hp.label_expert_epoch
        )
        check_same_data(buf, name, dm.identity()["zca"])
        return buf

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return unflatten_parameters(flat, self._names, self._shapes, self._sizes)

    def initial_images(self, dm: Any) -> torch.Tensor:
        """Initial images, and (stashed for ``setup``) the soft labels that go with them."""
        hp = self.settings
        if self.hparams.get("init_from"):
            return self._given_start(dm)
        if not hp.soft_labels and (hp.init == "noise" or not self.init_correct):
            return super().initial_images(dm)
        k, ipc = dm.num_classes, hp.ipc
        cand, pool = candidates(dm, ipc, hp.init_pool, hp.seed, functools.partial(self._normalize, dm))
        logits, correct = self._expert_logits(cand, torch.arange(k).repeat_interleave(pool))
        if hp.init == "noise":
            images = super().initial_images(dm)
            self._pending_logits = class_typical_labels(logits, correct, k, pool, ipc)
            return images
        images, self._pending_logits = correct_start(cand, logits, correct, pool, ipc, type(self).__name__)
        return images

    def _expert_logits(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, N, K) logits of the label experts on ``images`` and (E, N) whether each is right."""
        hp = self.settings
        experts = self.buffer.completed[: hp.label_experts] if hp.soft_labels else self.buffer.completed[:1]
        trainer = self.attached_trainer
        device = trainer.strategy.root_device if trainer is not None else images.device
        logits = expert_logits(
            self.net, self.buffer, self._unflatten, images, experts, hp.label_expert_epoch, device
        )
        return logits, logits.argmax(-1).cpu() == labels

    def _given_start(self, dm: Any) -> torch.Tensor:
        images = super().initial_images(dm)  # init_from's, checked against this run
        if self.settings.soft_labels:
            self._pending_logits = given_logits(self.hparams.init_from, images, self._expert_logits)
        return images

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        if self.label_logits is None and "label_logits" in state:
            self.label_logits = nn.Parameter(torch.empty_like(state["label_logits"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.settings
        groups = [self.images_group(hp.lr_img, hp.momentum)]
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
        hp = self.settings
        growth = hp.max_start_epoch_growth_steps
        return start_bound(step, hp.current_max_start_epoch, hp.max_start_epoch, growth)

    def plan(self, step: int, generator: torch.Generator) -> IterationPlan:
        hp = self.settings
        completed = self.buffer.completed
        expert = completed[int(torch.randint(len(completed), (), generator=generator))]
        bound = self.max_start_bound(step)
        start = int(torch.randint(hp.min_start_epoch, bound, (), generator=generator))
        n = self.images.shape[0]
        batches = minibatch_schedule(n, hp.batch_syn or n, hp.syn_steps, generator)
        augs = [self.dsa.sample(len(b), generator, device=self.device, share_op=True) for b in batches]
        return IterationPlan(expert, start, bound, [b.to(self.device) for b in batches], augs)

    def unroll(self, start: torch.Tensor, plan: IterationPlan) -> torch.Tensor:
        """The student after ``syn_steps`` differentiable SGD steps from ``start``."""
        labels = self.label_logits if self.label_logits is not None else self.labels
        run = functools.partial(student_steps, self.net, self.dsa, self._unflatten)
        hp = self.settings
        by_budget = hp.checkpoint_segments is None and hp.memory_budget_mb is not None
        if by_budget and self._budget_segments is None:
            self._budget_segments = segments_from_budget(
                run, start, plan, self.images, labels, self.syn_lr, hp.memory_budget_mb
            )
        segments = self._budget_segments if by_budget else (hp.checkpoint_segments or 0)
        self._segments = segments
        return unroll_student(run, start, plan, self.images, labels, self.syn_lr, segments)

    def iteration_loss(self, plan: IterationPlan) -> tuple[torch.Tensor, float]:
        """The matching loss of one plan and the MB autograd saves for its backward."""
        traj = self.buffer.load_expert(plan.expert, mmap=True)
        start = traj[plan.start_epoch].to(self.device)
        target = traj[plan.start_epoch + self.settings.expert_epochs].to(self.device)
        saved = SavedBytes()
        with saved:
            student = self.unroll(start, plan)
            mask = self.fiem
            if self.settings.loss_ratio > 0:
                mask = mask & loss_ratio_mask(student, target, self.settings.loss_ratio)
            loss = matching_loss(student, start, target, mask)
        return loss, saved.megabytes

    def distill_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        # The data module's batch is not used: the only data are the expert trajectories and the set.
        step = int(self.global_step)
        gen = torch.Generator().manual_seed(mix_seed(self.settings.seed, 31, step, self.global_rank))
        self._plan = self.plan(step, gen)
        loss, self._graph_mb = self.iteration_loss(self._plan)
        return {"loss": loss}

    def apply_update(self, opt: Any, losses: dict[str, torch.Tensor]) -> None:
        # DATM's threshold: an iteration whose loss exceeds it changes nothing (decided on the device).
        threshold = self.settings.loss_threshold
        self._ok = None if threshold is None else losses["loss"].detach() <= threshold
        guarded_step(opt, self._ok)

    def extra_logs(self, losses: dict[str, torch.Tensor]) -> dict[str, Any]:
        plan, ok, hp = self._plan, self._ok, self.settings
        logs: dict[str, Any] = {
            "distill/syn_lr": self.syn_lr.detach(),
            "distill/start_epoch": float(plan.start_epoch),
            "distill/start_epoch_bound": float(plan.bound),
            "distill/expert": float(plan.expert),
            "memory/graph_saved_mb": self._graph_mb,
        }
        self._iterations += 1
        if ok is not None:
            logs["distill/skipped"] = (~ok).float()
            self._skipped = (~ok).long() + (0 if self._skipped is None else self._skipped)
        if self.label_logits is not None:
            with torch.no_grad():
                logp = self.label_logits.log_softmax(-1)
                logs["distill/label_entropy"] = -(logp.exp() * logp).sum(-1).mean()
        if self.global_step == 0:
            rank_zero_info(
                f"[ddlight] {type(self).__name__}: the unrolled graph of {hp.syn_steps} steps keeps "
                f"{self._graph_mb:.1f} MB for backward (checkpoint segments: {self._segments}); "
                f"peak so far {peak_memory_mb(self.device):.0f} MB"
            )
        return logs

    def on_train_end(self) -> None:
        report_skips(self._skipped, self._iterations, self.settings.loss_threshold)
        super().on_train_end()

    # ---------------------------------------------------------------------------------------- export
    def export_labels(self) -> torch.Tensor:
        if self.label_logits is None:
            return super().export_labels()
        return self.label_logits.detach().float().cpu().clone()

    def export_config(self) -> dict[str, Any]:
        cfg = super().export_config()  # hparams, with the DSA strategy that ran
        cfg["model"] = {**jsonable(vars(self.settings)), **cfg["model"]}  # plus what the method fixed
        return cfg

    def export_extra(self) -> dict[str, Any]:
        # DATM/PAD evaluate their sets at ``args.lr_net = syn_lr``; ddlight's evaluator does so with
        # ``lr: learned`` and otherwise keeps its configured protocol rate.
        return {**super().export_extra(), "syn_lr": float(self.syn_lr.detach())}
