"""Evaluation of the set while it is being distilled."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ddlight.artifacts import EVALS_FILE, TAG_EVAL_MEAN, TAG_EVAL_STD
from ddlight.evaluation.recipe import LEARNED, Recipe, Schedule, resolve_lr
from ddlight.evaluation.runs import Runs
from ddlight.utils.io import atomic_json_dump


class EvaluateSyntheticCallback(L.Callback):
    """Evaluates the distiller's current set every ``every_n_steps`` steps (and at the end of fit).

    Trains ``num_runs`` fresh copies of ``net`` for ``epochs`` with the evaluator's recipe on rank 0 (no
    nested Trainer: the evaluation's plain loop, :class:`ddlight.evaluation.Runs`), tests on the data module's
    test set, and logs ``eval/test_acc_mean`` / ``_std`` at the distiller's step. Off in the study's
    configs (it costs CPU time the study did not spend), on in ``configs/mnist/datadam_best.yaml``.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        every_n_steps: int = 500,
        num_runs: int = 2,
        epochs: int = 300,
        lr: float | Literal["learned"] = 0.01,
        schedule: Schedule = "step",
        batch_size: int = 256,
        results_path: str | None = None,
        precision: str = "32-true",
    ) -> None:
        # a typo must not wait for the first evaluation to surface (the recipe checks it)
        self.recipe = Recipe(num_runs=num_runs, epochs=epochs, lr=lr, schedule=schedule)
        self.net = net
        self.precision = precision
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.results_path = results_path
        self.history: list[dict[str, Any]] = []

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        syn = pl_module.synthetic_set()
        # Default: the distiller's own architecture (re-initialised per run by the evaluator), so the
        # callback never needs the data's shape typed a second time.
        net = self.net if self.net is not None else pl_module.net
        runs = Runs(copy.deepcopy(net), self.recipe.but(seed=int(trainer.global_step))).to(pl_module.device)
        with torch.inference_mode(False), torch.enable_grad():
            res = runs.fit(
                syn.images.to(pl_module.device),
                syn.labels.to(pl_module.device),
                trainer.datamodule.test_dataloader(),
                syn.dataset,
                batch_size=self.batch_size,
                precision=self.precision,
                extra=syn.extra,
            )
        res["step"] = int(trainer.global_step)
        self.history.append(res)
        rank_zero_info(
            f"[ddlight] step {res['step']}: synthetic set -> {res['architecture']} test accuracy "
            f"{100 * res['mean']:.2f} +- {100 * res['std']:.2f} %"
        )
        if trainer.logger is not None:
            trainer.logger.log_metrics({TAG_EVAL_MEAN: res["mean"], TAG_EVAL_STD: res["std"]}, res["step"])
        # Default: beside the distiller's synthetic.pt, so the history travels with the set it describes.
        path = Path(self.results_path) if self.results_path else getattr(pl_module, "export_path", None)
        if path is not None:
            atomic_json_dump(self.history, path if self.results_path else path / EVALS_FILE, sort_keys=False)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # lr="learned" needs a distiller that learns a student rate (PAD); say so before distilling,
        # not after every_n_steps iterations of work.
        if self.recipe.lr == LEARNED:
            extra = pl_module.export_extra() if hasattr(pl_module, "export_extra") else None
            resolve_lr(LEARNED, extra, f"{type(pl_module).__name__}.export_extra()")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history or self.history[-1]["step"] != trainer.global_step:
            self._evaluate(trainer, pl_module)
