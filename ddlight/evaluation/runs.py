"""The evaluation's one training loop: ``num_runs`` fresh copies of a network trained side by side on a set
under a :class:`~ddlight.evaluation.recipe.Recipe`, then tested.

The runs' parameters are disjoint, so one SGD optimizer over all of them is exactly ``num_runs``
independent trainings, and a small synthetic set keeps the CPU busier this way than ``num_runs``
sequential short runs would. Plain PyTorch, no Trainer: a Trainer's per-epoch bookkeeping would dominate
a 100-image epoch. The Lightning evaluator (:mod:`ddlight.evaluation.evaluator`) drives the same pieces
(:meth:`Runs.prepare`, :meth:`Runs.step`, :meth:`Runs.finish`) from its hooks.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from ddlight.artifacts import (
    RES_ARCHITECTURE,
    RES_EPOCHS,
    RES_LABELS,
    RES_MEAN,
    RES_NUM_RUNS,
    RES_SCHEDULE,
    RES_SECONDS_PER_RUN,
    RES_STD,
)
from ddlight.data.registry import flip_invariant
from ddlight.evaluation.loss_trend import MIN_LOSS_DROP, LossTrend
from ddlight.evaluation.recipe import (
    LEARNED,
    LR_SOURCES,
    SEARCH,
    Recipe,
    lr_factor,
    reference_decay_epoch,
    resolve_lr,
)
from ddlight.evaluation.result import EvalResult
from ddlight.models.convnet import ConvNet, compile_training, use_lean_graph
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DSA, strategy_for
from ddlight.ops.losses import label_entropy, soft_or_hard_ce
from ddlight.ops.metrics import accuracy
from ddlight.ops.optim import network_sgd

PRECISIONS = ("32-true", "32", "bf16-mixed")


class Runs:
    """``recipe.num_runs`` seeded re-initialisations of ``net`` (the template is not trained) and the state
    one evaluation keeps: its base rate, its augmentation and generator, the loss trend."""

    # From this many trained images (runs x epochs x set size) on, a ConvNet left at compile "auto" trains
    # compiled from the first step: enough steps to repay a cold compile (docs/performance.md).
    compile_from_images = 100_000

    def __init__(self, net: nn.Module, recipe: Recipe) -> None:
        self.net = net
        self.recipe = recipe
        # requires_grad on: the template may be a distiller's frozen network (the callback's default);
        # trained first-order, so ATen's ReLU/pooling backward even if the template's graph was lean
        copies = (use_lean_graph(copy.deepcopy(net), False) for _ in range(recipe.num_runs))
        self.nets = nn.ModuleList(
            reinitialize(c.requires_grad_(True), mix_seed(recipe.seed, 3, r)) for r, c in enumerate(copies)
        )
        # a learned or searched rate is known only once the set (or the validation split) is there
        self.base_lr = math.nan if recipe.lr in (LEARNED, SEARCH) else resolve_lr(recipe.lr, None, "")
        self.dsa_op: DSA | None = None
        self.dsa_gen: torch.Generator | None = None
        self.trend = LossTrend()
        self.label_floor = 0.0
        self.labels_kind = "hard"
        self.dataset_name = ""

    @property
    def device(self) -> torch.device:
        return next(self.nets.parameters()).device

    def to(self, device: torch.device | str) -> Runs:
        self.nets.to(device)
        return self

    def prepare(
        self,
        dataset_name: str,
        extra: dict[str, Any] | None = None,
        source: str = "",
        labels: torch.Tensor | None = None,
        searched_lr: float | None = None,
    ) -> None:
        """Everything the set decides: the rate (``searched_lr`` when the caller searched one), the
        augmentation (whether the data may be flipped), the label floor of the learning check."""
        r = self.recipe
        self.trend = LossTrend()
        self.label_floor = label_entropy(labels) if labels is not None else 0.0
        self.labels_kind = "soft" if labels is not None and labels.dim() == 2 else "hard"
        self.dataset_name = dataset_name
        if searched_lr is None:  # unsearched, resolve_lr refuses "search" with the reason
            searched_lr = resolve_lr(r.lr, extra, source or "no synthetic set given")
        self.base_lr = searched_lr
        self.dsa_op = DSA(strategy_for(r.dsa_strategy, flip_invariant(dataset_name))) if r.dsa else None
        self.dsa_gen = torch.Generator().manual_seed(mix_seed(r.seed, 4))
        if labels is not None:
            self.plan_compile(labels.shape[0])

    def plan_compile(self, num_images: int) -> bool:
        """Whether this evaluation is long enough to train compiled (:func:`~ddlight.models.compile_training`;
        ConvNets at ``compile="auto"`` on a CPU then do): only a long one repays the compile, so the test
        suite and short checks stay eager."""
        long = self.recipe.num_runs * self.recipe.epochs * num_images >= self.compile_from_images
        for net in self.nets:
            compile_training(net, long)
        # the device is not known yet (Lightning moves the module after setup), hence "on a CPU"
        if long and any(isinstance(m, ConvNet) and m.compile_mode == "auto" for m in self.nets[0].modules()):
            rank_zero_info(  # the first step's pause needs a reason
                "[ddlight] evaluation: training compiled on a CPU (ConvNet compile 'auto', long evaluation; "
                "the first step compiles, cached on disk; configs/overlays/eager.yaml switches it off)"
            )
        return long

    def make_optimizer(self) -> torch.optim.Optimizer:
        return network_sgd(
            self.nets.parameters(), self.base_lr, self.recipe.momentum, self.recipe.weight_decay
        )

    def start_epoch(self, opt: torch.optim.Optimizer, epoch: int) -> None:
        """``reference``: at the decay the authors build a new SGD, so training goes on without the
        momentum buffers; dropping the optimizer's state is that (same groups, the decayed rate set by
        ``lr_factor``) without rebuilding it."""
        if self.recipe.schedule == "reference" and epoch == reference_decay_epoch(self.recipe.epochs):
            opt.state.clear()

    def backward(
        self, x: torch.Tensor, y: torch.Tensor, backward: Callable[[torch.Tensor], None], autocast: Any
    ) -> torch.Tensor:
        """Each run's loss on its own augmentation of the batch, backpropagated at once; the detached
        (num_runs,) losses. The runs' parameters are disjoint, so this is exactly the backward of their
        sum, while only one run's activations are alive at a time instead of all runs' graphs together."""
        losses = []
        for net in self.nets:
            xa = x
            if self.dsa_op is not None:
                params = self.dsa_op.sample(
                    x.shape[0], generator=self.dsa_gen, device=x.device, share_op=True
                )
                xa = self.dsa_op.apply(x, params)
            with autocast:
                loss = soft_or_hard_ce(net(xa), y)
            backward(loss)
            losses.append(loss.detach())
        return torch.stack(losses)

    def fit(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        test_loader: Iterable,
        dataset_name: str,
        batch_size: int = 256,
        precision: str = "32-true",
        extra: dict[str, Any] | None = None,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
        searched_lr: float | None = None,
    ) -> EvalResult:
        """Train on ``images``/``labels`` and test on ``test_loader``.

        ``precision``: ``"32-true"``, or ``"bf16-mixed"`` (autocast, as ``--trainer.precision bf16-mixed``
        does on the Lightning path), which CPUs with AVX512-BF16 and GPUs run faster. ``extra`` is the set's
        ``extra`` dict, read for the learned rate when ``lr="learned"``. ``normalize`` maps a batch of uint8
        ``images`` to the network's input (a real data module's ``normalize``), so a large real set stays
        uint8 in memory.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be '32-true' or 'bf16-mixed', got {precision!r}")
        autocast = (
            torch.autocast(images.device.type, dtype=torch.bfloat16)
            if precision == "bf16-mixed"
            else contextlib.nullcontext()
        )
        self.prepare(dataset_name, extra, "the set passed to Runs.fit", labels, searched_lr)
        r = self.recipe
        opt = self.make_optimizer()
        gen = torch.Generator().manual_seed(mix_seed(r.seed, 5))
        n = images.shape[0]
        self.nets.train()
        t0 = time.perf_counter()
        for epoch in range(r.epochs):
            self.start_epoch(opt, epoch)
            for g in opt.param_groups:
                g["lr"] = self.base_lr * lr_factor(r.schedule, epoch, r.epochs)
            perm = torch.randperm(n, generator=gen).to(images.device)
            for idx in perm.split(batch_size):
                x = images[idx] if normalize is None else normalize(images[idx])
                opt.zero_grad(set_to_none=True)
                losses = self.backward(x, labels[idx], torch.Tensor.backward, autocast)
                self.trend.add(epoch, losses)
                opt.step()
        return self.finish(test_loader, time.perf_counter() - t0)

    def finish(self, loader: Iterable, train_seconds: float) -> EvalResult:
        accs = accuracy(self.nets, loader, self.device)
        r = self.recipe
        return EvalResult(
            {
                RES_ARCHITECTURE: type(self.net).__name__,
                RES_NUM_RUNS: r.num_runs,
                RES_EPOCHS: r.epochs,
                RES_SCHEDULE: r.schedule,
                RES_LABELS: self.labels_kind,
                "lr": self.base_lr,
                "lr_source": LR_SOURCES.get(str(r.lr), "config"),
                "accuracy_at": "final epoch (no selection on test data)",
                "dsa": r.dsa,
                "dsa_strategy": self.dsa_op.strategy if self.dsa_op is not None else "none",
                "accuracies": [float(a) for a in accs],
                RES_MEAN: float(accs.mean()),
                RES_STD: float(accs.std(unbiased=False)) if r.num_runs > 1 else 0.0,
                "train_seconds_total": train_seconds,
                RES_SECONDS_PER_RUN: train_seconds / r.num_runs,
                **self.learning_check(),
            }
        )

    def learning_check(self) -> dict[str, Any]:
        """First/last epoch training loss per run, and the runs whose loss did not fall (flagged and warned:
        an architecture the recipe cannot train, e.g. AlexNet at lr 0.01, tests near chance and says
        nothing about the set)."""
        first, last, stuck = self.trend.summary(self.label_floor)
        if first is None:
            return {}
        if stuck:
            pairs = ", ".join(f"run {r}: {first[r]:.3f} -> {last[r]:.3f}" for r in stuck)
            rank_zero_warn(
                f"SyntheticEvaluator: {len(stuck)} of {len(first)} {type(self.net).__name__} run(s) did not "
                f"learn ({pairs} mean training loss, first -> last epoch; the loss fell by less than "
                f"{int(100 * MIN_LOSS_DROP)} % of the way to its floor {self.label_floor:.3f}). Their "
                "accuracy says little about the set: try another lr (model.init_args.lr) or architecture."
            )
        return {"train_loss_first_epoch": first, "train_loss_last_epoch": last, "runs_not_learning": stuck}
