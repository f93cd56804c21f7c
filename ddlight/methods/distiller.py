"""What every distiller shares: the learnable synthetic set, its initialisation, TensorBoard image grids,
and export of ``synthetic.pt`` + ``grid.png`` at the end of fit and with every checkpoint.

Method modules (DataDAM, PAD) subclass :class:`Distiller` and fill in its template hooks: the set-up
(``setup``), the optimiser (``configure_optimizers``: one optimizer, one parameter group per learnable
part, named as in :data:`LR_ARGS`), the step's losses (``distill_losses``) and, where a method needs them,
``apply_update`` (PAD's loss threshold), ``extra_logs`` and the export hooks (``export_labels``,
``export_extra``). The step itself is :meth:`Distiller.training_step`, the same for every method.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import nn

from ddlight.artifacts import (
    EXTRA_DISTILL_SECONDS,
    GRID_FILE,
    LATEST_LINK,
    SYNTHETIC_FILE,
    TAG_DISTILL_SECONDS,
    TAG_GRID,
    TAG_PEAK_MB,
)
from ddlight.data.base import RealDataModule, dataset_name
from ddlight.data.synthetic import SyntheticSet
from ddlight.methods.initial_set import images_from, kcenter_images
from ddlight.methods.run_guard import RunGuard
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DSA
from ddlight.utils.classwise import class_index, sample_per_class
from ddlight.utils.io import point_link
from ddlight.utils.jsonable import jsonable
from ddlight.utils.memory import peak_memory_mb, reset_peak_memory

# How a set starts: random real images of each class, Gaussian noise, or k-center real images.
Init = Literal["real", "noise", "kcenter"]
INITS: tuple[str, ...] = get_args(Init)
# The init argument that sets each optimizer parameter group's learning rate, named in divergence errors.
LR_ARGS = {"images": "lr_img", "labels": "lr_label", "syn_lr": "lr_lr"}


class Distiller(L.LightningModule, ABC):
    """Holds ``images`` (an ``nn.Parameter``, class-major: class 0's ``ipc`` images first) and hard labels.

    The set's shape depends on the data module (classes, channels, image size), so it is created in
    ``setup``; ``on_load_checkpoint`` creates it from the checkpoint when a module is restored outside a
    trainer.

    The arguments every method shares live here with their defaults, so a method lists only its own and
    hands the rest on as ``**kwargs``; ``save_hyperparameters`` here collects every level's arguments (the
    subclasses' frames are still on the stack), so subclasses do not call it.

    Args:
        ipc: images per class.
        init: ``real`` (random real images), ``noise`` (Gaussian) or ``kcenter`` (greedy k-center in a
            random network's embedding).
        seed: seeds the initial set and every random network and draw.
        grid_every: log the image grid to TensorBoard every this many steps (0: only at the end).
        export_dir: where ``synthetic.pt``/``grid.png`` go (default: the logger's version folder, also
            reachable as ``logs/<name>/latest``).
        checkpoint_every: steps between ``<export dir>/checkpoints/last.ckpt`` saves (0: none; also none
            when the trainer's ``enable_checkpointing`` is false).
        check_every: steps between reads of the divergence flags (see :mod:`ddlight.methods.run_guard`).
        init_from: a ``synthetic.pt`` whose images start the set instead of ``init``'s draw: another
            method's result to distil further, or one start shared by two implementations (the parity
            harness's equal-budget runs). Its dataset, normalisation, classes and ``ipc`` must be this run's.
    """

    OUTPUT_ARG = "export_dir"  # where the set is written (ddlight.artifacts.OUTPUT_ARG_ATTR)

    # Facts about the method, read by the CLI and the report instead of matching names: its key in configs
    # and reports, how tables title it, and whether an Experts stage (expert trajectories) must run first.
    method_name: ClassVar[str] = "distiller"
    display_name: ClassVar[str] = "Distiller"
    needs_experts: ClassVar[bool] = False
    # What every method provides: the network it matches in (a template; the base copies it for
    # evaluations), its DSA (None: no augmentation) and, besides the shared arguments below, the hparams
    # ``lr_img`` and ``momentum`` that the default optimizer reads.
    net: nn.Module
    dsa: DSA | None = None

    def __init__(
        self,
        ipc: int = 10,
        init: Init = "real",
        seed: int = 0,
        grid_every: int = 100,
        export_dir: str | None = None,
        checkpoint_every: int = 50,
        check_every: int = 10,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if ipc < 1:
            raise ValueError(f"ipc must be >= 1, got {ipc}")
        if checkpoint_every < 0 or check_every < 1:
            raise ValueError(
                f"need checkpoint_every >= 0 and check_every >= 1, got {checkpoint_every}, {check_every}"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.images: nn.Parameter | None = None
        self.register_buffer("labels", torch.empty(0, dtype=torch.long))
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self.num_classes = 0
        self.dataset_name = ""
        # The real data's identity (class names, ZCA, test-set digest) recorded in every export, and the
        # map that displays network-space images (un-whitening a ZCA set's grid).
        self.data_identity: dict[str, Any] = {}
        self._display: Any = None
        # Seconds spent inside training steps: the distillation cost, without evaluation callbacks,
        # checkpointing or logging. Kept across resumes.
        self.distill_seconds = 0.0
        # Why the run ended early (interrupt, divergence, error); None while it runs or when it finished.
        self.stop_reason: str | None = None
        self._export_dir: Path | None = None
        self._latest_link: Path | None = None

    # ----------------------------------------------------------------------------------------- set up
    def on_fit_start(self) -> None:
        # memory/peak_mb then measures this run (data and set already in memory), not what the process
        # held before it (the report runs stages in one process).
        reset_peak_memory(self.device)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if not isinstance(dm, RealDataModule):
            raise ValueError(
                f"{type(self).__name__} needs a real-data module (e.g. MNISTDataModule) as `data`"
            )
        self._resolve_export_dir()
        dm.setup(stage)
        self.mean, self.std = tuple(dm.mean), tuple(dm.std)
        self.num_classes = dm.num_classes
        self.dataset_name = dataset_name(dm)
        self.data_identity = dm.identity()
        self._display = dm.normalizer.display
        if self.images is None:
            self.check_ipc(dm)
            self.images = nn.Parameter(self.initial_images(dm))
            self.labels = torch.arange(self.num_classes).repeat_interleave(self.hparams.ipc)

    def _resolve_export_dir(self) -> None:
        """Where exports go, resolved once on every rank: ``trainer.log_dir`` is a broadcast, and reaching
        it later from rank-zero-only code (``export``) would leave the other ranks waiting forever."""
        if self.hparams.export_dir:
            self._export_dir = Path(self.hparams.export_dir)
            return
        log_dir = self.trainer.log_dir
        self._export_dir = Path(log_dir or self.trainer.default_root_dir)
        # logs/<name>/version_N gets a logs/<name>/latest link, so commands need not guess N.
        if self.trainer.loggers and self._export_dir.name.startswith("version_"):
            self._latest_link = self._export_dir.parent / LATEST_LINK

    def check_ipc(self, dm: Any) -> None:
        """Refuse more synthetic images per class than a class has real ones: a real initialisation would
        repeat images, and a set that large distils nothing."""
        counts = torch.bincount(dm.train_labels, minlength=self.num_classes)
        small = torch.nonzero(counts < self.hparams.ipc).flatten().tolist()
        if small:
            names = getattr(dm, "class_names", None) or [str(i) for i in range(self.num_classes)]
            have = ", ".join(f"{names[c]!r}: {int(counts[c])}" for c in small[:10])
            raise ValueError(
                f"ipc={self.hparams.ipc} exceeds the training images of {len(small)} class(es) of "
                f"{type(dm).__name__} ({have}); init {self.hparams.init!r} would repeat images. Lower "
                f"model.init_args.ipc to at most {int(counts.min())}."
            )

    def initial_images(self, dm: Any) -> torch.Tensor:
        """Seeded initial set: random real images per class, Gaussian noise, or k-center picks; or the
        images of ``init_from``."""
        hp = self.hparams
        if hp.get("init_from"):
            return images_from(hp.init_from, dm, hp.ipc)
        gen = torch.Generator().manual_seed(mix_seed(hp.seed, 17))
        k, ipc = dm.num_classes, hp.ipc
        c, (h, w) = dm.channels, dm.image_size
        if hp.init == "noise":
            return torch.randn(k * ipc, c, h, w, generator=gen)
        table, counts = class_index(dm.train_labels, k)
        if hp.init == "real":
            idx = sample_per_class(table, counts, ipc, gen).flatten()
            return self._normalize(dm, dm.train_images[idx])
        return self._kcenter(dm, table, counts, gen)

    def _normalize(self, dm: Any, images_u8: torch.Tensor) -> torch.Tensor:
        # The data module's own map, so a ZCA data module's initial images are whitened like its batches.
        return dm.normalize(images_u8)

    def _kcenter(
        self, dm: Any, table: torch.Tensor, counts: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        net = reinitialize(self.net_template_copy(), mix_seed(self.hparams.seed, 23)).eval()
        return kcenter_images(dm, table, counts, gen, net, self.hparams.ipc)

    def net_template_copy(self) -> nn.Module:
        import copy

        return copy.deepcopy(self.net)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        if self.images is None and "images" in state:
            self.images = nn.Parameter(torch.empty_like(state["images"]))
            self.labels = torch.empty_like(state["labels"])
        extra = checkpoint.get("ddlight", {})
        self.mean, self.std = tuple(extra.get("mean", ())), tuple(extra.get("std", ()))
        self.num_classes = extra.get("num_classes", self.num_classes)
        self.dataset_name = extra.get("dataset", self.dataset_name)
        self.data_identity = dict(extra.get("data_identity", self.data_identity))
        self.distill_seconds = float(extra.get(EXTRA_DISTILL_SECONDS, 0.0))

    # ---------------------------------------------------------------------------------------- export
    def synthetic_set(self, partial: str = "", iteration: int | None = None):

        return SyntheticSet(
            images=self.images.detach().float().cpu().clone(),
            labels=self.export_labels(),
            mean=self.mean,
            std=self.std,
            num_classes=self.num_classes,
            method=self.method_name,
            dataset=self.dataset_name,
            class_names=list(self.data_identity.get("class_names", [])),
            zca=dict(self.data_identity.get("zca", {})),
            test_sha256=str(self.data_identity.get("test_sha256", "")),
            ipc=self.hparams.ipc,
            iteration=int(self.global_step if iteration is None else iteration),
            seed=int(self.hparams.seed),
            config=self.export_config(),
            extra=self.export_extra(),
            partial=partial,
        )

    def export_labels(self) -> torch.Tensor:
        return self.labels.detach().cpu().clone()

    def export_extra(self) -> dict[str, Any]:
        return {EXTRA_DISTILL_SECONDS: self.distill_seconds}

    @property
    def attached_trainer(self) -> L.Trainer | None:
        """The trainer, or None for a module used on its own (restored from a checkpoint, exported from a
        script), where Lightning's ``trainer`` property raises."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def export_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"model": jsonable(dict(self.hparams))}
        dsa = getattr(self, "dsa", None)
        if dsa is not None and "dsa_strategy" in cfg["model"]:
            cfg["model"]["dsa_strategy"] = dsa.strategy  # what ran ("auto" resolved), so a rerun repeats it
        trainer = self.attached_trainer
        if trainer is not None and trainer.datamodule is not None:
            cfg["data"] = jsonable(dict(getattr(trainer.datamodule, "hparams", {})))
        return cfg

    def configure_callbacks(self) -> list[L.Callback]:
        """The run guard (periodic ``last.ckpt``, graceful Ctrl-C, divergence stop, partial export);
        checkpoints only when the trainer checkpoints at all (``enable_checkpointing``)."""
        every = self.hparams.checkpoint_every if self.trainer.checkpoint_callbacks else 0
        return [RunGuard(check_every=self.hparams.check_every, checkpoint_every=every)]

    def lr_hints(self, groups: list[str]) -> str:
        """``model.init_args.lr_img (now 1e+30)`` for each group (all groups when ``groups`` is empty)."""
        names = groups or [str(g.get("name")) for opt in self.trainer.optimizers for g in opt.param_groups]
        args = [LR_ARGS.get(n, f"the rate of group {n!r}") for n in names]
        return " or ".join(
            f"model.init_args.{a} (now {self.hparams[a]:g})" if a in self.hparams else a for a in args
        )

    @property
    def export_path(self) -> Path:
        if self._export_dir is not None:
            return self._export_dir
        if self.hparams.export_dir:
            return Path(self.hparams.export_dir)
        trainer = self.attached_trainer
        return Path(trainer.default_root_dir) if trainer is not None else Path(".")

    @rank_zero_only
    def export(self, partial: str = "", iteration: int | None = None) -> Path:
        """Write ``synthetic.pt`` + ``grid.png``; ``partial`` says why a set is not the finished one.

        Rank-zero-only, so it must not reach a collective (``trainer.log_dir`` is one: see setup)."""
        syn = self.synthetic_set(partial, iteration)
        out = self.export_path
        path = syn.save(out / SYNTHETIC_FILE)
        syn.save_grid(out / GRID_FILE, display=self._display)
        if self._latest_link is not None:
            point_link(self._latest_link, out.name)
        return path

    def progress_note(self) -> str:
        """Partial-set note for an export in the middle of a run ("" once the last step is reached)."""
        if self.stop_reason:
            return self.stop_reason
        max_steps = self.trainer.max_steps
        if max_steps is not None and 0 <= max_steps <= self.global_step:
            return ""
        return f"in progress: step {self.global_step} of {max_steps if max_steps and max_steps > 0 else '?'}"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ddlight"] = {
            "mean": list(self.mean),
            "std": list(self.std),
            "num_classes": self.num_classes,
            "dataset": self.dataset_name,
            "data_identity": self.data_identity,
            EXTRA_DISTILL_SECONDS: self.distill_seconds,
        }
        trainer = self.attached_trainer
        if self.images is not None and trainer is not None and trainer.state.fn == "fit":
            self.export(partial=self.progress_note())

    def on_train_end(self) -> None:
        rank_zero_info(
            f"[ddlight] distillation compute: {self.distill_seconds:.1f} s in {self.global_step} steps"
        )

    def on_fit_end(self) -> None:
        # on_fit_end (not on_train_end) so that a max_steps=0 run still exports its initial set: that is
        # how the "initialisation only" rows of the study are produced.
        path = self.export(partial=self.stop_reason or "")
        if path is not None:
            rank_zero_info(f"[ddlight] synthetic set written to {path}")
        self.log_grid()

    # ------------------------------------------------------------------------------------ tensorboard
    @rank_zero_only
    def log_grid(self) -> None:
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        grid = self.synthetic_set().grid_tensor(display=self._display)
        exp.add_image(TAG_GRID, grid, int(self.global_step))

    def maybe_log_grid(self) -> None:
        every = self.hparams.grid_every
        if every and self.global_step % every == 0:
            self.log_grid()

    def images_group(self, lr: float, momentum: float) -> dict[str, Any]:
        return {"params": [self.images], "lr": lr, "momentum": momentum, "name": "images"}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """SGD on the images alone (``lr_img``, ``momentum``), what DC, DSA, DM and DataDAM learn; a method
        that learns more adds parameter groups to the same optimizer (one optimizer: two would double
        ``global_step``)."""
        return torch.optim.SGD([self.images_group(self.hparams.lr_img, self.hparams.momentum)])

    # ------------------------------------------------------------------------------- the step template
    @abstractmethod
    def distill_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """This step's objective under ``"loss"``, plus any parts worth logging (as ``distill/<name>``)."""

    def apply_update(self, opt: Any, losses: dict[str, torch.Tensor]) -> None:
        """The update after backward; a method may refuse or undo it (PAD's loss threshold)."""
        opt.step()

    def extra_logs(self, losses: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Scalars beyond the losses, logged with them (tensors stay on the device: no host sync)."""
        return {}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # manual_backward, not loss.backward(): only the former all-reduces the set's gradients under DDP.
        t0 = time.perf_counter()
        losses = self.distill_losses(batch)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(losses["loss"])
        self.apply_update(opt, losses)
        self.distill_seconds += time.perf_counter() - t0
        self.log_dict({f"distill/{k}": v.detach() for k, v in losses.items()} | self.extra_logs(losses))
        self.log(TAG_DISTILL_SECONDS, self.distill_seconds)
        self.log(TAG_PEAK_MB, peak_memory_mb(self.device))  # a counter read: no device sync
        self.log("distill/loss_bar", losses["loss"].detach(), prog_bar=True, logger=False)
        self.maybe_log_grid()
        return losses["loss"].detach()
