"""Synthetic-set evaluation as a Lightning stage: train networks from scratch on the distilled set, test on
the real test set (``python -m ddlight fit --config configs/mnist/evaluate.yaml``).

A thin module over :class:`~ddlight.evaluation.runs.Runs`, the evaluation's one training loop: ``num_runs``
networks (independent seeded initialisations and augmentation draws) trained side by side under one
:class:`~ddlight.evaluation.recipe.Recipe`; Lightning brings the data module, the precision plugin, the
logger and the CLI. Reported: per-run test accuracy, mean +- std, and training wall time per run
(total / num_runs), to TensorBoard and to a JSON file.

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
on the test set; :mod:`ddlight.evaluation.scoring`). Accuracy is always the final epoch's.

``baselines`` (a :class:`~ddlight.evaluation.scoring.Baselines`) adds the scored protocol: the same recipe on
a random real subset of the same IPC and on the full real training set, with and without augmentation,
and DD-Ranking's HLR / IOR / LRS / ARS in the results.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from ddlight.artifacts import TAG_EVAL_MEAN, TAG_EVAL_SECONDS, TAG_EVAL_STD
from ddlight.data.base import dataset_name
from ddlight.evaluation.recipe import SEARCH, Recipe, Schedule, lr_factor
from ddlight.evaluation.result import EvalResult
from ddlight.evaluation.runs import Runs
from ddlight.evaluation.scoring import DEFAULT_LR_GRID, Baselines, RealSplits, score, search_lr
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed
from ddlight.ops.augment import DEFAULT_STRATEGY
from ddlight.ops.scores import SCORES
from ddlight.utils.io import atomic_json_dump


class SyntheticEvaluator(L.LightningModule):
    """Trains ``num_runs`` fresh copies of ``net`` on a synthetic set and tests them on real data.

    Use with :class:`ddlight.data.SyntheticDataModule` (``python -m ddlight fit --config
    configs/mnist/evaluate.yaml``); the test accuracy is computed when training ends, so one ``fit``
    gives the result. It stops itself after ``epochs`` (the lr schedule's length), so ``trainer.max_epochs``
    stays unset (or -1 beyond Lightning's 1000). Without a Trainer, use :class:`~ddlight.evaluation.Runs`.
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
        self.recipe = Recipe(num_runs, epochs, lr, momentum, weight_decay, schedule, dsa, dsa_strategy, seed)
        self.lr_grid = tuple(float(x) for x in (lr_grid or DEFAULT_LR_GRID))
        # the CLI hands a dataclass argument over as a dict; one type from here on
        self.baselines = Baselines(**baselines) if isinstance(baselines, dict) else baselines
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = net  # the template; kept so the config and checkpoint name the architecture
        self.runs = Runs(net, self.recipe)
        self.nets = self.runs.nets  # registered here, so Lightning moves and checkpoints them
        self.results: dict[str, Any] = {}
        self._t0 = 0.0
        self._partial = ""
        self._lr_search: dict[str, float] | None = None
        self.splits: RealSplits | None = None

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        check_num_classes(self.net, dm, "SyntheticEvaluator")
        max_epochs = self.trainer.max_epochs  # Lightning's 1000 when unset
        if stage == "fit" and max_epochs not in (None, -1) and max_epochs < self.recipe.epochs:
            raise ValueError(
                f"trainer.max_epochs={max_epochs} would cut the lr schedule of model.init_args.epochs="
                f"{self.recipe.epochs}: leave trainer.max_epochs unset (the evaluator stops itself after "
                "`epochs`) or set it to -1"
            )
        syn = getattr(dm, "synthetic", None)
        name = syn.dataset if syn is not None else dataset_name(dm)
        source = str(getattr(dm, "path", type(dm).__name__))
        searched = None
        if stage == "fit" and (self.recipe.lr == SEARCH or self.baselines is not None):
            self.splits = self.real_splits(dm)
        if stage == "fit" and self.recipe.lr == SEARCH:
            searched, self._lr_search = search_lr(
                self.net, self.recipe, syn.images, syn.labels, self.splits.val_loader(), self.lr_grid, name
            )
            rank_zero_info(f"[ddlight] lr {searched:g} chosen on the validation split: {self._lr_search}")
        elif self._lr_search is not None:  # a searched rate stays for later stages of the same module
            searched = self.runs.base_lr
        self.runs.prepare(
            name, syn.extra if syn is not None else None, source, syn.labels if syn else None, searched
        )
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
        return RealSplits(real, self.hparams.val_fraction, mix_seed(self.recipe.seed, 6))

    def configure_optimizers(self):
        opt = self.runs.make_optimizer()
        r = self.recipe
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(r.schedule, e, r.epochs))
        return {"optimizer": opt, "lr_scheduler": sched}  # stepped at each epoch's end

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self.runs.start_epoch(self.optimizers(), self.current_epoch)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # Manual optimisation so that each run backpropagates on its own (Runs.backward); Lightning's
        # precision plugin already wraps this step in autocast.
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        losses = self.runs.backward(x, y, self.manual_backward, contextlib.nullcontext())
        opt.step()
        self.runs.trend.add(self.current_epoch, losses)
        self.log("eval/train_loss", losses.mean(), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
        # `epochs` is the one place the length is typed; trainer.max_epochs need not repeat it.
        if self.current_epoch + 1 >= self.recipe.epochs:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        dm = self.trainer.datamodule
        res = self.finish(self.runs.finish(dm.test_dataloader(), time.perf_counter() - self._t0))
        if self.baselines is not None:
            self.add_scores(dm)
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

    def finish(self, res: EvalResult) -> EvalResult:
        """The loop's result with what only this stage knows (the search, a partial set), written."""
        if self._lr_search is not None:
            res["lr_search"] = {"validation": self.splits.describe(), "val_accuracy": self._lr_search}
        if self._partial:
            res["set_partial"] = self._partial
        self.results = res
        self.write()
        return res

    def write(self) -> None:
        if self.hparams.results_path:  # fields in reading order
            atomic_json_dump(self.results, Path(self.hparams.results_path), sort_keys=False)

    def add_scores(self, dm: Any) -> None:
        """The scored protocol's runs (fresh networks, the plain loop) and scores, into the results (and
        the results file), logged."""
        with torch.inference_mode(False), torch.enable_grad():
            extra = score(
                self.net,
                self.recipe,
                self.results,
                dm.synthetic,
                self.splits,
                dm.test_dataloader(),
                self.baselines,
                self.lr_grid,
            )
        self.results.update(extra)
        self.write()
        s, runs = extra["scores"], extra["baselines"]
        rank_zero_info(
            f"[ddlight] scores: {' '.join(f'{k} {s[k]:.4f}' for k in SCORES)} (random subset "
            f"{100 * runs['random']['mean']:.2f} %, full data {100 * runs['full']['mean']:.2f} %)"
        )
        if self.logger is not None:
            self.logger.log_metrics({f"eval/{k}": s[k] for k in SCORES}, self.global_step)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        for i, net in enumerate(self.nets):
            self.log(f"test/acc_run{i}", (net(x).argmax(1) == y).float().mean(), batch_size=y.numel())
