"""PAD stage 1: expert trajectories trained on an EL2N difficulty curriculum.

Trajectory matching (MTT, DATM, PAD) distils against the parameters that networks trained on the real
data pass through. This stage trains those networks ("experts") and stores every epoch's parameters in a
buffer (:mod:`~ddlight.methods.trajectory.buffer`) that the PAD distiller reads. Each epoch trains only on
the samples PAD's curriculum (:mod:`~ddlight.methods.trajectory.fiex`) admits, ranked by EL2N difficulty
(:mod:`~ddlight.methods.trajectory.el2n`).

Recipe, as in the references (MTT ``buffer.py``, DATM/PAD ``buffer/buffer_*.py``): SGD at a constant
``lr_teacher = 0.01`` with momentum 0 and weight decay 0, batch 256, DSA augmentation of every training
batch, parameters recorded at initialisation and after every epoch. Deliberate differences:

* PAD/DATM train experts with GSAM (sharpness-aware, from FTD); we keep MTT's plain SGD, which the
  distiller's own student SGD mirrors, and avoid a second optimiser implementation.
* PAD reads precomputed per-class difficulty orders; we compute EL2N here (see ``el2n``).
* ZCA as the data module says (MTT/PAD whiten CIFAR only); DSA without flip on digits (``strategy_for``).

Lightning mapping: one Lightning epoch is one epoch of the current expert; the module stops fit itself
(``trainer.should_stop``) after the last missing expert, so ``trainer.max_epochs`` stays unset. The buffer
is the checkpoint: experts are written only when complete, and a rerun trains only the experts the
manifest lacks, each from the seed-derived initialisation and batch order of an uninterrupted run.

Lightning takes the training loader from the datamodule, while the curriculum changes the subset every
epoch. So the datamodule's loader (the whole set in batches of the same size: never shorter) only paces
the epoch: ``on_before_batch_transfer`` swaps in the curriculum's batch before the device transfer and
``on_train_batch_start`` ends the epoch when the curriculum's batches run out.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader

from ddlight.data.base import RealDataModule, dataset_name
from ddlight.methods.trajectory.buffer import (
    EL2N_FILE,
    FORMAT_VERSION,
    Stream,
    flatten_parameters,
    open_manifest,
    record_expert,
    tensor_digest,
)
from ddlight.methods.trajectory.el2n import cached_scores, el2n_network, el2n_scores
from ddlight.methods.trajectory.fiex import FIEX, fiex_schedule, shuffled_loader
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DEFAULT_STRATEGY, DSA, strategy_for
from ddlight.ops.metrics import accuracy
from ddlight.ops.optim import network_sgd
from ddlight.utils.io import atomic_torch_save

Batch = tuple[torch.Tensor, torch.Tensor]


class Experts(L.LightningModule):
    """Trains ``num_experts`` copies of ``net``, one after another, and writes their trajectories.

    Args:
        net: template network (``class_path``); every expert (and every EL2N network) is this network
            re-initialised from a seed derived from ``seed`` and its index.
        num_experts, epochs: how many experts and how many epochs each (MTT/DATM: 100 x 50; PAD's README
            for CIFAR-10: 100 x 100).
        lr, momentum, weight_decay: the experts' constant-rate SGD (``lr_teacher``, ``mom``, ``l2``).
        dsa, dsa_strategy: DSA on every training batch; ``auto`` drops flip for digit datasets.
        buffer_dir: output directory; also where an interrupted run is resumed from.
        el2n_models, el2n_epochs: networks and epochs behind the EL2N difficulty scores (Paul et al.'s
            10 networks scored at epoch 20).
        scheduler: use PAD's difficulty curriculum; ``False`` trains every epoch on all data (MTT/DATM).
        fiex: the curriculum (:class:`~ddlight.methods.trajectory.fiex.FIEX`; in YAML a mapping,
            ``fiex: {init_ratio: 0.75, add_end_epoch: 20, ...}``).
        seed: root of every random stream of the buffer (recorded in the manifest).

    Data: a ``RealDataModule`` (in-memory uint8 splits, its one normalisation with ZCA, ``batch_size``).
    Its own ``train_dataloader`` cannot know the curriculum, so the module serves each epoch's batches
    itself (shuffled, seeded per expert and epoch); ``trainer.limit_train_batches`` still applies, and the
    EL2N networks' epochs honour it too, so a CPU-sized run shortens both alike.
    """

    OUTPUT_ARG = "buffer_dir"  # the buffer is the output (ddlight.artifacts.OUTPUT_ARG_ATTR)

    def __init__(
        self,
        net: nn.Module,
        num_experts: int = 10,
        epochs: int = 50,
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dsa: bool = True,
        dsa_strategy: str = DEFAULT_STRATEGY,
        buffer_dir: str = "artifacts/experts_mnist",
        el2n_models: int = 10,
        el2n_epochs: int = 20,
        scheduler: bool = True,
        fiex: FIEX = FIEX(),  # noqa: B008 - frozen, so every instance may share it
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_experts < 1 or epochs < 1:
            raise ValueError(f"num_experts and epochs must be >= 1, got {num_experts} and {epochs}")
        if scheduler and (el2n_models < 1 or el2n_epochs < 0):
            raise ValueError(
                f"el2n_models must be >= 1 and el2n_epochs >= 0, got {el2n_models}, {el2n_epochs}"
            )
        self.save_hyperparameters()
        self.net = net
        # The argument, not hparams.fiex: under the CLI hparams hold the parsed config (a mapping).
        self.fiex = fiex
        self.buffer_dir = Path(buffer_dir)
        self.dsa: DSA | None = None
        self.todo: list[int] = []
        self.scores: torch.Tensor | None = None
        self._traj: torch.Tensor | None = None
        self._aug_gen: torch.Generator | None = None
        self._batches: Iterator[Batch] = iter(())
        self._steps = 0
        self._t_expert = 0.0
        self._active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # ------------------------------------------------------------------ setup and validation

    def _check_trainer(self) -> None:
        trainer, hp = self.trainer, self.hparams
        dm = trainer.datamodule
        if not isinstance(dm, RealDataModule):
            raise TypeError(
                "Experts needs a real-data module (a RealDataModule, e.g. MNISTDataModule) with in-memory "
                f"uint8 tensors as `data`; got {type(dm).__name__}"
            )
        check_num_classes(self.net, dm, type(self).__name__)
        if trainer.fast_dev_run:
            raise ValueError(
                "Experts does not support fast_dev_run (it would write truncated experts into the "
                "buffer); use tiny num_experts/epochs with trainer.limit_train_batches instead"
            )
        if trainer.world_size > 1:
            raise ValueError("Experts trains experts one after another on one device; set devices: 1")
        planned = hp.num_experts * hp.epochs
        if (trainer.max_epochs != -1 and trainer.max_epochs < planned) or trainer.max_steps != -1:
            raise ValueError(
                f"Experts runs one Lightning epoch per expert epoch and stops itself after {planned} "
                f"(num_experts {hp.num_experts} x epochs {hp.epochs}): leave trainer.max_epochs unset "
                "(Lightning's 1000) or set it to -1 beyond that, and leave max_steps at -1; "
                f"got max_epochs={trainer.max_epochs}, max_steps={trainer.max_steps}"
            )
        if trainer.min_epochs or trainer.min_steps:
            raise ValueError(
                "Experts stops fit itself after the last missing expert; leave trainer.min_epochs and "
                f"min_steps unset (got {trainer.min_epochs}, {trainer.min_steps})"
            )

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        self._check_trainer()
        hp, dm = self.hparams, self.trainer.datamodule
        dm.setup("fit")
        self.dataset_name = dataset_name(dm)
        self.dsa = DSA(strategy_for(hp.dsa_strategy, dm.flip_invariant)) if hp.dsa else None
        self.train_digest = tensor_digest(dm.train_images, dm.train_labels)
        self.manifest = open_manifest(
            self.buffer_dir, self._manifest_identity(), hp.num_experts, hp.scheduler
        )
        done = {int(c["index"]) for c in self.manifest["completed"]}
        self.todo = [i for i in range(hp.num_experts) if i not in done]
        rank_zero_info(
            f"[ddlight] expert buffer {self.buffer_dir}: {len(done)} of {hp.num_experts} experts present, "
            f"training {self.todo if len(self.todo) <= 12 else f'{len(self.todo)} experts'}"
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise RuntimeError(
            "Experts resumes from its buffer, not from Lightning checkpoints: rerun the same command "
            "without ckpt_path and it continues at the next missing expert"
        )

    def _manifest_identity(self) -> dict[str, Any]:
        """Everything that must agree for two experts to belong in the same buffer."""
        hp, dm = self.hparams, self.trainer.datamodule
        net_cfg = (
            hp.net
            if isinstance(hp.net, dict)
            else {"class_path": f"{type(self.net).__module__}.{type(self.net).__qualname__}"}
        )
        names, shapes = zip(*[(n, list(p.shape)) for n, p in self.net.named_parameters()], strict=True)
        return {
            "format_version": FORMAT_VERSION,
            "epochs": hp.epochs,
            "param_names": list(names),
            "param_shapes": list(shapes),
            "num_params": int(sum(p.numel() for p in self.net.parameters())),
            "net": net_cfg,
            "dataset": {
                "name": self.dataset_name,
                "num_train": len(dm.train_labels),
                "num_classes": int(dm.num_classes),
                "train_sha256": self.train_digest,
                # Only when whitened, so buffers written before ZCA existed still resume.
                **({"zca": dm.identity()["zca"]} if getattr(dm, "zca_transform", None) is not None else {}),
            },
            "seed": hp.seed,
            "recipe": {
                # How the random streams are derived (``Stream`` tags through ``mix_seed``): a buffer begun
                # under another derivation must not be resumed, its experts would not be reproducible.
                "seeding": "mix_seed",
                "optimizer": "SGD",
                "lr": hp.lr,
                "momentum": hp.momentum,
                "weight_decay": hp.weight_decay,
                "batch_size": int(dm.batch_size),
                "limit_train_batches": self.trainer.limit_train_batches,
                "dsa_strategy": self.dsa.strategy if self.dsa is not None else "none",
                "scheduler": hp.scheduler,
                "fiex": asdict(self.fiex) if hp.scheduler else None,
                "el2n": {"models": hp.el2n_models, "epochs": hp.el2n_epochs} if hp.scheduler else None,
            },
        }

    # ------------------------------------------------------------------ EL2N phase

    def _steps_per_epoch(self, n_batches: int) -> int:
        limit = self.trainer.limit_train_batches
        if isinstance(limit, int):
            return min(limit, n_batches)
        return int(n_batches * limit)

    def _sgd(self, net: nn.Module) -> torch.optim.Optimizer:
        hp = self.hparams
        return network_sgd(net.parameters(), hp.lr, hp.momentum, hp.weight_decay)

    def _load_or_compute_el2n(self) -> torch.Tensor:
        hp, dm = self.hparams, self.trainer.datamodule
        path = self.buffer_dir / EL2N_FILE
        n = len(dm.train_labels)
        want = {
            "train_sha256": self.train_digest,
            "num_train": n,
            "models": hp.el2n_models,
            "epochs": hp.el2n_epochs,
            "seed": hp.seed,
        }
        cached = cached_scores(path, want)
        if cached is not None:
            return cached
        nets = []
        ds = dm.dataset(dm.train_images, dm.train_labels)
        t0 = time.perf_counter()
        for m in range(hp.el2n_models):
            net = el2n_network(
                self.net,
                ds,
                m,
                seed=hp.seed,
                epochs=hp.el2n_epochs,
                batch_size=dm.batch_size,
                optimizer=self._sgd,
                steps_per_epoch=self._steps_per_epoch,
                dsa=self.dsa,
                device=self.device,
            )
            nets.append(net)
            rank_zero_info(
                f"[ddlight] EL2N network {m + 1}/{hp.el2n_models} trained ({time.perf_counter() - t0:.0f} s)"
            )
        scores = el2n_scores(
            nets, dm.train_images, dm.train_labels, dm.normalize, dm.eval_batch_size, self.device
        )
        seconds = time.perf_counter() - t0
        atomic_torch_save({**want, "format_version": FORMAT_VERSION, "scores": scores}, path)
        rank_zero_info(f"[ddlight] EL2N scores of {n} samples written to {path} in {seconds:.0f} s")
        if self.logger is not None:
            self.logger.log_metrics({"el2n/mean": float(scores.mean()), "el2n/seconds": seconds}, 0)
        return scores

    def on_fit_start(self) -> None:
        if not self.todo:
            # Every expert is already in the buffer. Stopping here trains nothing: Lightning's min_epochs
            # defaults to 0 precisely so that should_stop set in on_fit_start skips the loop.
            self.trainer.should_stop = True
            return
        if self.hparams.scheduler:
            self.scores = self._load_or_compute_el2n()

    # ------------------------------------------------------------------ per-epoch data

    def _where(self) -> tuple[int, int]:
        """(expert index, 0-based epoch of that expert) for the current Lightning epoch."""
        slot, local = divmod(self.trainer.current_epoch, self.hparams.epochs)
        return self.todo[slot], local

    def active_indices(self, epoch: int) -> torch.Tensor:
        dm = self.trainer.datamodule
        if not self.hparams.scheduler:
            return torch.arange(len(dm.train_labels))
        return fiex_schedule(self.scores, epoch, dm.train_labels, self.fiex)

    def epoch_loader(self, expert: int, epoch: int) -> DataLoader:
        """``expert``'s loader for its 0-based ``epoch``: the curriculum's subset in a seeded order."""
        dm, hp = self.trainer.datamodule, self.hparams
        ds = dm.dataset(dm.train_images, dm.train_labels)
        idx = self.active_indices(epoch)
        self._active = len(idx)
        return shuffled_loader(ds, idx, dm.batch_size, mix_seed(hp.seed, Stream.BATCHES, expert, epoch))

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self.trainer.training:
            return batch
        # The datamodule's batch only paces the epoch; once the curriculum's run out it is passed on, and
        # on_train_batch_start ends the epoch before it is used.
        return next(self._batches, batch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if batch_idx >= self._steps else None

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self._sgd(self.net)

    def _start_expert(self, expert: int) -> None:
        hp = self.hparams
        reinitialize(self.net, mix_seed(hp.seed, Stream.EXPERT_INIT, expert))
        for opt in self.trainer.optimizers:  # a fresh expert must not inherit momentum buffers
            opt.state.clear()
        self._traj = torch.empty(hp.epochs + 1, sum(p.numel() for p in self.net.parameters()))
        self._traj[0] = flatten_parameters(self.net)
        self._aug_gen = torch.Generator().manual_seed(mix_seed(hp.seed, Stream.DSA, expert))
        self._t_expert = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        expert, epoch = self._where()
        if epoch == 0:
            self._start_expert(expert)
            rank_zero_info(f"[ddlight] expert {expert}: {self.hparams.epochs} epochs")
        loader = self.epoch_loader(expert, epoch)
        self._steps = self._steps_per_epoch(len(loader))
        if self._steps > self.trainer.num_training_batches:
            raise RuntimeError(
                f"the datamodule's training loader has {self.trainer.num_training_batches} batches per "
                f"epoch, fewer than the {self._steps} of this expert epoch; Experts needs one that covers "
                "the training set in batches of batch_size (RealDataModule without episode_per_class)"
            )
        self._batches = itertools.islice(loader, self._steps)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.dsa is not None:
            # One op for the whole batch with per-sample parameters: what the references get from
            # calling DiffAugment on a batch without a seed.
            x = self.dsa(x, generator=self._aug_gen, share_op=True)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def evaluate_test(self) -> float:
        was_training = self.net.training
        acc = float(accuracy([self.net], self.trainer.datamodule.test_dataloader(), self.device)[0])
        self.net.train(was_training)
        return acc

    def on_train_epoch_end(self) -> None:
        hp = self.hparams
        expert, epoch = self._where()
        self._traj[epoch + 1] = flatten_parameters(self.net)
        self.log("expert/index", float(expert), on_epoch=True)
        self.log("expert/epoch", float(epoch), on_epoch=True)
        self.log(
            "fiex/active_fraction", self._active / len(self.trainer.datamodule.train_labels), on_epoch=True
        )
        if epoch + 1 < hp.epochs:
            return
        test_acc = self.evaluate_test()
        seconds = time.perf_counter() - self._t_expert
        self.log("expert/test_acc", test_acc, on_epoch=True, prog_bar=True)
        record_expert(self.buffer_dir, self.manifest, expert, self._traj, test_acc, seconds)
        rank_zero_info(f"[ddlight] expert {expert} done in {seconds:.0f} s, test acc {test_acc:.4f}")
        if expert == self.todo[-1]:
            # The rerun of an interrupted command has fewer experts to go than max_epochs allows for.
            self.trainer.should_stop = True
