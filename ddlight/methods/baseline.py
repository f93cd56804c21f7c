"""Full-data baseline: train an injected network on the real training set.

This is the upper bound every distilled set is compared against, and its recipe (SGD 0.01, momentum
0.9, cosine over the run, 50 epochs, batch 256) is the study's.
"""

from __future__ import annotations

import time
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ddlight.artifacts import TAG_MACS, TAG_PARAMS, TAG_TEST_ACC, TAG_TRAIN_SECONDS
from ddlight.models.checks import check_num_classes, input_shape_of
from ddlight.ops.flops import count_macs, format_cost
from ddlight.ops.optim import network_sgd


class Baseline(L.LightningModule):
    """Trains ``net`` on real data, reporting micro accuracy, parameters, fvcore MACs and wall time.

    Args:
        net: any classifier (``ddlight.models.*`` by ``class_path``).
        lr, momentum, weight_decay: SGD settings.
        scheduler: ``cosine`` (annealed per step to zero over the whole run) or ``none``.
        num_classes: only used for the metrics; taken from ``net.num_classes`` when omitted.
        seed: the run's seed for the data order; the CLI links it to ``data.init_args.seed`` so that one
            flag (``--model.init_args.seed``) seeds a run, as for every other stage.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        scheduler: Literal["cosine", "none"] = "cosine",
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"scheduler must be 'cosine' or 'none', got {scheduler!r}")
        self.save_hyperparameters()
        self.net = net
        n = num_classes or net.num_classes
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.cost: dict[str, object] = {}
        self._t0 = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        check_num_classes(self.net, self.trainer.datamodule, type(self).__name__)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "channels"):
            self.cost = count_macs(self.net, input_shape_of(dm))
            rank_zero_info(f"[ddlight] {type(self.net).__name__}: {format_cost(self.cost)}")
            if self.logger is not None:
                self.logger.log_metrics(
                    {
                        TAG_PARAMS: float(self.cost["params"]),
                        TAG_MACS: float(self.cost["macs"]),
                    },
                    0,
                )
            if hasattr(dm, "describe"):
                rank_zero_info(f"[ddlight] class counts: {dm.describe()}")

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_end(self) -> None:
        seconds = time.perf_counter() - self._t0
        self.train_seconds = seconds
        rank_zero_info(f"[ddlight] training wall time: {seconds:.1f} s")
        if self.logger is not None:
            self.logger.log_metrics({TAG_TRAIN_SECONDS: seconds}, self.global_step)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self.net(x), y)
        self.log(TAG_TEST_ACC, self.test_acc)

    def configure_optimizers(self):
        hp = self.hparams
        opt = network_sgd(self.net.parameters(), hp.lr, hp.momentum, hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
