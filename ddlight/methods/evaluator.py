"""Synthetic-set evaluation: train networks from scratch on the distilled set, test on the real test set.

``num_runs`` networks (independent seeded initialisations and augmentation draws) are trained side by
side in one module: their parameters are disjoint, so one SGD optimizer over all of them is exactly
``num_runs`` independent trainings, and a small synthetic set keeps the CPU busier this way than with
``num_runs`` sequential short runs. Reported: per-run test accuracy, mean +- std, and training wall
time per run (total / num_runs), to TensorBoard and to a JSON file.

Recipes (``schedule``): ``step`` is the field's standard (SGD momentum 0.9, weight decay 5e-4, lr x0.1 at
half of the epochs; 300 or 1000 epochs); ``reference`` is that recipe exactly as the authors' loop runs it
(``evaluate_synset`` of DC/DSA/DM/DataDAM's ``utils.py``, DC-Bench's ``evaluator_utils.py``): for their
``Epoch`` they train ``range(Epoch + 1)`` epochs and, after epoch ``Epoch // 2 + 1``, build a fresh SGD at
a tenth of the rate, which drops the momentum buffers; here ``epochs`` counts the epochs trained, so
their 300 / 1000 are ``epochs: 301`` / ``1001`` (``docs/parity.md``). ``cosine`` is the study's (SGD
0.01, cosine annealing, 50 epochs).

Learning rate (``lr``): a number, or ``"learned"`` for the student rate a trajectory-matching distiller
learned with the images (PAD/DATM/MTT evaluate their sets at ``args.lr_net = syn_lr``; the set stores it
as ``extra["syn_lr"]``). A set without one is refused rather than silently evaluated at a default rate.
``"search"`` picks one from ``lr_grid`` on a validation split held out of the real training set (never
on the test set; :mod:`ddlight.methods.scoring`). Accuracy is always the final epoch's.

``baselines`` (a :class:`~ddlight.methods.scoring.Baselines`) adds the scored protocol: the same recipe on
a random real subset of the same IPC and on the full real training set, with and without augmentation,
and DD-Ranking's HLR / IOR / LRS / ARS in the results.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
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
    TAG_EVAL_MEAN,
    TAG_EVAL_SECONDS,
    TAG_EVAL_STD,
)
from ddlight.data.base import dataset_name
from ddlight.data.registry import flip_invariant
from ddlight.methods.loss_trend import MIN_LOSS_DROP, LossTrend
from ddlight.methods.lr_recipe import (  # noqa: F401 (re-exported: the evaluator's recipe)
    LEARNED,
    LR_SOURCES,
    SCHEDULES,
    SEARCH,
    Schedule,
    lr_factor,
    reference_decay_epoch,
    resolve_lr,
)
from ddlight.methods.scoring import DEFAULT_LR_GRID, Baselines, RealSplits, add_scores, search_lr
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DEFAULT_STRATEGY, DSA, strategy_for
from ddlight.ops.losses import label_entropy, soft_or_hard_ce
from ddlight.ops.metrics import accuracy
from ddlight.ops.optim import network_sgd
from ddlight.utils.io import atomic_json_dump


class SyntheticEvaluator(L.LightningModule):
    """Trains ``num_runs`` fresh copies of ``net`` on a synthetic set and tests them on real data.

    Use with :class:`ddlight.data.SyntheticDataModule` (``python -m ddlight fit --config
    configs/mnist/evaluate.yaml``); the test accuracy is computed when training ends, so one ``fit``
    gives the result. It stops itself after ``epochs`` (the lr schedule's length), so ``trainer.max_epochs``
    stays unset (or -1 beyond Lightning's 1000).
    """

    OUTPUT_ARG = "results_path"

    def __init__(
        self,
        net: nn.Module,
        num_runs: int = 5,
        epochs: int = 300,
        lr: float | Literal["learned", "search"] = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: Schedule = "step",
        dsa: bool = True,
        dsa_strategy: str = DEFAULT_STRATEGY,
        seed: int = 0,
        results_path: str | None = None,
        lr_grid: list[float] | None = None,
        val_fraction: float = 0.1,
        baselines: Baselines | None = None,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if num_runs < 1:
            raise ValueError(f"num_runs must be >= 1, got {num_runs}")
        # a learned rate is read from the set in prepare(); any other string is refused here, before training
        self.base_lr = math.nan if lr in (LEARNED, SEARCH) else resolve_lr(lr, None, "")
        self.lr_grid = tuple(float(x) for x in (lr_grid or DEFAULT_LR_GRID))
        # the CLI hands a dataclass argument over as a dict; one type from here on
        self.baselines = Baselines(**baselines) if isinstance(baselines, dict) else baselines
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = net  # the template; kept so the config and checkpoint name the architecture
        # requires_grad on: the template may be a distiller's frozen network (the callback's default)
        self.nets = nn.ModuleList(
            reinitialize(copy.deepcopy(net).requires_grad_(True), mix_seed(seed, 3, r))
            for r in range(num_runs)
        )
        self.dsa_op: DSA | None = None
        self.results: dict[str, Any] = {}
        self._t0 = 0.0
        self._dsa_gen: torch.Generator | None = None
        self.trend = LossTrend()
        self._label_floor = 0.0
        self._labels_kind = "hard"
        self._partial = ""
        self.dataset_name = ""
        self._lr_search: dict[str, float] | None = None
        self.splits: RealSplits | None = None

    # ----------------------------------------------------------------------------- shared pieces
    def prepare(
        self,
        dataset_name: str,
        extra: dict[str, Any] | None = None,
        source: str = "",
        labels: torch.Tensor | None = None,
    ) -> None:
        hp = self.hparams
        self.trend = LossTrend()
        self._label_floor = label_entropy(labels) if labels is not None else 0.0
        self._labels_kind = "soft" if labels is not None and labels.dim() == 2 else "hard"
        self.dataset_name = dataset_name
        # a searched rate comes from setup(), which has the validation split; unsearched, resolve_lr refuses
        if hp.lr != SEARCH or self._lr_search is None:
            self.base_lr = resolve_lr(hp.lr, extra, source or "no synthetic set given")
        self.dsa_op = DSA(strategy_for(hp.dsa_strategy, flip_invariant(dataset_name))) if hp.dsa else None
        self._dsa_gen = torch.Generator().manual_seed(mix_seed(hp.seed, 4))

    def make_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return network_sgd(self.nets.parameters(), self.base_lr, hp.momentum, hp.weight_decay)

    def maybe_fresh_optimizer(self, opt: torch.optim.Optimizer, epoch: int) -> None:
        """``reference``: at the decay the authors build a new SGD, so training goes on without the
        momentum buffers; dropping the optimizer's state is that (same groups, the decayed rate set by
        ``lr_factor``) without rebuilding it, which Lightning's path could not do."""
        if self.hparams.schedule == "reference" and epoch == reference_decay_epoch(self.hparams.epochs):
            opt.state.clear()

    def runs_backward(
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
                    x.shape[0], generator=self._dsa_gen, device=x.device, share_op=True
                )
                xa = self.dsa_op.apply(x, params)
            with autocast:
                loss = soft_or_hard_ce(net(xa), y)
            backward(loss)
            losses.append(loss.detach())
        return torch.stack(losses)

    def finish(self, loader: Iterable, train_seconds: float) -> dict[str, Any]:
        accs = accuracy(self.nets, loader, self.device)
        hp = self.hparams
        self.results = {
            RES_ARCHITECTURE: type(self.net).__name__,
            RES_NUM_RUNS: hp.num_runs,
            RES_EPOCHS: hp.epochs,
            RES_SCHEDULE: hp.schedule,
            RES_LABELS: self._labels_kind,
            "lr": self.base_lr,
            "lr_source": LR_SOURCES.get(str(hp.lr), "config"),
            "accuracy_at": "final epoch (no selection on test data)",
            "dsa": hp.dsa,
            "dsa_strategy": self.dsa_op.strategy if self.dsa_op is not None else "none",
            "accuracies": [float(a) for a in accs],
            RES_MEAN: float(accs.mean()),
            RES_STD: float(accs.std(unbiased=False)) if hp.num_runs > 1 else 0.0,
            "train_seconds_total": train_seconds,
            RES_SECONDS_PER_RUN: train_seconds / hp.num_runs,
            **self.learning_check(),
        }
        if self._lr_search is not None:
            self.results["lr_search"] = {
                "validation": self.splits.describe(),
                "val_accuracy": self._lr_search,
            }
        if self._partial:
            self.results["set_partial"] = self._partial
        if hp.results_path:
            atomic_json_dump(self.results, Path(hp.results_path), sort_keys=False)  # fields in reading order
        return self.results

    def learning_check(self) -> dict[str, Any]:
        """First/last epoch training loss per run, and the runs whose loss did not fall (flagged and warned:
        an architecture the recipe cannot train, e.g. AlexNet at lr 0.01, tests near chance and says
        nothing about the set)."""
        first, last, stuck = self.trend.summary(self._label_floor)
        if first is None:
            return {}
        if stuck:
            pairs = ", ".join(f"run {r}: {first[r]:.3f} -> {last[r]:.3f}" for r in stuck)
            rank_zero_warn(
                f"SyntheticEvaluator: {len(stuck)} of {len(first)} {type(self.net).__name__} run(s) did not "
                f"learn ({pairs} mean training loss, first -> last epoch; the loss fell by less than "
                f"{int(100 * MIN_LOSS_DROP)} % of the way to its floor {self._label_floor:.3f}). Their "
                "accuracy says little about the set: try another lr (model.init_args.lr) or architecture."
            )
        return {"train_loss_first_epoch": first, "train_loss_last_epoch": last, "runs_not_learning": stuck}

    def fit_plain(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        test_loader: Iterable,
        dataset_name: str,
        batch_size: int = 256,
        precision: str = "32-true",
        extra: dict[str, Any] | None = None,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """The same training without a Trainer: for callbacks that evaluate mid-distillation and for
        scripts, where a Trainer's per-epoch bookkeeping would dominate a 100-image epoch.

        ``precision`` takes Lightning's names for what this loop supports: ``"32-true"``, or
        ``"bf16-mixed"`` (autocast, as ``--trainer.precision bf16-mixed`` does on the Lightning path),
        which CPUs with AVX512-BF16 and GPUs run faster. ``extra`` is the set's ``extra`` dict, read
        for the learned rate when ``lr="learned"``. ``normalize`` maps a batch of uint8 ``images`` to the
        network's input (a real data module's ``normalize``), so a large real set stays uint8 in memory.
        """
        if precision not in ("32-true", "32", "bf16-mixed"):
            raise ValueError(f"precision must be '32-true' or 'bf16-mixed', got {precision!r}")
        autocast = (
            torch.autocast(images.device.type, dtype=torch.bfloat16)
            if precision == "bf16-mixed"
            else contextlib.nullcontext()
        )
        self.prepare(dataset_name, extra, "the set passed to fit_plain", labels)
        hp = self.hparams
        opt = self.make_optimizer()
        gen = torch.Generator().manual_seed(mix_seed(hp.seed, 5))
        n = images.shape[0]
        self.nets.train()
        t0 = time.perf_counter()
        for epoch in range(hp.epochs):
            self.maybe_fresh_optimizer(opt, epoch)
            for g in opt.param_groups:
                g["lr"] = self.base_lr * lr_factor(hp.schedule, epoch, hp.epochs)
            perm = torch.randperm(n, generator=gen).to(images.device)
            for idx in perm.split(batch_size):
                x = images[idx] if normalize is None else normalize(images[idx])
                opt.zero_grad(set_to_none=True)
                losses = self.runs_backward(x, labels[idx], torch.Tensor.backward, autocast)
                self.trend.add(epoch, losses)
                opt.step()
        return self.finish(test_loader, time.perf_counter() - t0)

    # ------------------------------------------------------------------------------ Lightning path
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        check_num_classes(self.net, dm, "SyntheticEvaluator")
        max_epochs = self.trainer.max_epochs  # Lightning's 1000 when unset
        if stage == "fit" and max_epochs not in (None, -1) and max_epochs < self.hparams.epochs:
            raise ValueError(
                f"trainer.max_epochs={max_epochs} would cut the lr schedule of model.init_args.epochs="
                f"{self.hparams.epochs}: leave trainer.max_epochs unset (the evaluator stops itself after "
                "`epochs`) or set it to -1"
            )
        syn = getattr(dm, "synthetic", None)
        name = syn.dataset if syn is not None else dataset_name(dm)
        source = str(getattr(dm, "path", type(dm).__name__))
        if stage == "fit" and (self.hparams.lr == SEARCH or self.baselines is not None):
            self.splits = self.real_splits(dm)
        if stage == "fit" and self.hparams.lr == SEARCH:
            self.base_lr, self._lr_search = search_lr(
                self, syn.images, syn.labels, self.splits.val_loader(), self.lr_grid, name
            )
            rank_zero_info(f"[ddlight] lr {self.base_lr:g} chosen on the validation split: {self._lr_search}")
        self.prepare(name, syn.extra if syn is not None else None, source, syn.labels if syn else None)
        self._partial = syn.partial if syn is not None else ""
        if self._partial:
            rank_zero_warn(f"SyntheticEvaluator: {source} is a partial set ({self._partial})")

    def real_splits(self, dm: Any) -> RealSplits:
        real = getattr(dm, "real", None)
        if real is None or getattr(dm, "synthetic", None) is None:
            raise ValueError(
                f"lr={SEARCH!r} and baselines need the real training set: run the evaluator on a "
                f"ddlight.data.SyntheticDataModule (got {type(dm).__name__})"
            )
        return RealSplits(real, self.hparams.val_fraction, mix_seed(self.hparams.seed, 6))

    def configure_optimizers(self):
        opt = self.make_optimizer()
        hp = self.hparams
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(hp.schedule, e, hp.epochs))
        return {"optimizer": opt, "lr_scheduler": sched}  # stepped at each epoch's end

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self.maybe_fresh_optimizer(self.optimizers(), self.current_epoch)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # Manual optimisation so that each run backpropagates on its own (runs_backward); Lightning's
        # precision plugin already wraps this step in autocast.
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        losses = self.runs_backward(x, y, self.manual_backward, contextlib.nullcontext())
        opt.step()
        self.trend.add(self.current_epoch, losses)
        self.log("eval/train_loss", losses.mean(), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
        # `epochs` is the one place the length is typed; trainer.max_epochs need not repeat it.
        if self.current_epoch + 1 >= self.hparams.epochs:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        seconds = time.perf_counter() - self._t0
        dm = self.trainer.datamodule
        res = self.finish(dm.test_dataloader(), seconds)
        if self.baselines is not None:
            add_scores(self, dm)
        rank_zero_info(
            f"[ddlight] {res['architecture']} on the synthetic set: test accuracy "
            f"{100 * res['mean']:.2f} +- {100 * res['std']:.2f} % over {res['num_runs']} runs "
            f"({res['train_seconds_per_run']:.1f} s training per run)"
        )
        if self.logger is not None:
            self.logger.log_metrics(
                {
                    TAG_EVAL_MEAN: res["mean"],
                    TAG_EVAL_STD: res["std"],
                    TAG_EVAL_SECONDS: res["train_seconds_per_run"],
                },
                self.global_step,
            )

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        for i, net in enumerate(self.nets):
            self.log(f"test/acc_run{i}", (net(x).argmax(1) == y).float().mean(), batch_size=y.numel())
