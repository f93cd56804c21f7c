"""What every distiller shares: the learnable synthetic set, its initialisation, TensorBoard image grids,
and export of ``synthetic.pt`` + ``grid.png`` at the end of fit and with every checkpoint.

Method modules (DataDAM, PAD) subclass :class:`Distiller` and implement ``training_step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import nn

from ddlight.data.base import class_index, normalize_uint8, sample_per_class
from ddlight.data.synthetic import jsonable
from ddlight.models.init import mix_seed, reinitialize

INITS = ("real", "noise", "kcenter")


class Distiller(L.LightningModule):
    """Holds ``images`` (an ``nn.Parameter``, class-major: class 0's ``ipc`` images first) and hard labels.

    The set's shape depends on the data module (classes, channels, image size), so it is created in
    ``setup``; ``on_load_checkpoint`` creates it from the checkpoint when a module is restored outside a
    trainer.
    """

    method_name = "distiller"

    def __init__(
        self,
        ipc: int,
        init: str,
        seed: int,
        grid_every: int,
        export_dir: str | None,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if ipc < 1:
            raise ValueError(f"ipc must be >= 1, got {ipc}")
        self.automatic_optimization = False
        self.images: nn.Parameter | None = None
        self.register_buffer("labels", torch.empty(0, dtype=torch.long))
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self.num_classes = 0
        self.dataset_name = ""
        # Seconds spent inside training steps: the distillation cost, without evaluation callbacks,
        # checkpointing or logging. Kept across resumes.
        self.distill_seconds = 0.0

    # ----------------------------------------------------------------------------------------- set up
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "train_images"):
            raise ValueError(
                f"{type(self).__name__} needs a real-data module (e.g. MNISTDataModule) as `data`"
            )
        dm.setup(stage)
        self.mean, self.std = tuple(dm.mean), tuple(dm.std)
        self.num_classes = dm.num_classes
        self.dataset_name = type(dm).__name__.replace("DataModule", "").lower()
        if self.images is None:
            self.images = nn.Parameter(self.initial_images(dm))
            self.labels = torch.arange(self.num_classes).repeat_interleave(self.hparams.ipc)

    def initial_images(self, dm: Any) -> torch.Tensor:
        """Seeded initial set: random real images per class, Gaussian noise, or k-center picks."""
        hp = self.hparams
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
        return normalize_uint8(images_u8, dm.mean_t, dm.std_t)

    def _kcenter(
        self, dm: Any, table: torch.Tensor, counts: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """Greedy k-center per class in the embedding of a random network (all classes at once).

        Starts from the candidate nearest the class mean, then repeatedly adds the candidate farthest from
        the chosen ones: a spread-out, representative start instead of a random one.
        """
        k, ipc = dm.num_classes, self.hparams.ipc
        pool = min(int(counts.min()), max(10 * ipc, 200))
        cand_idx = sample_per_class(table, counts, pool, gen)  # (K, pool)
        cand = self._normalize(dm, dm.train_images[cand_idx.flatten()])
        net = reinitialize(self.net_template_copy(), mix_seed(self.hparams.seed, 23)).eval()
        with torch.inference_mode():
            emb = torch.cat([net.embed(chunk) for chunk in cand.split(1024)]).view(k, pool, -1)
        chosen = torch.empty(k, ipc, dtype=torch.long)
        first = (emb - emb.mean(1, keepdim=True)).pow(2).sum(-1).argmin(1)
        chosen[:, 0] = first
        mind = torch.cdist(emb, emb.gather(1, first.view(k, 1, 1).expand(-1, 1, emb.shape[-1]))).squeeze(-1)
        for j in range(1, ipc):  # over picks, not classes: every class advances in the same tensor op
            nxt = mind.argmax(1)
            chosen[:, j] = nxt
            d = torch.cdist(emb, emb.gather(1, nxt.view(k, 1, 1).expand(-1, 1, emb.shape[-1]))).squeeze(-1)
            mind = torch.minimum(mind, d)
        return (
            cand.view(k, pool, *cand.shape[1:])
            .gather(1, chosen.view(k, ipc, 1, 1, 1).expand(-1, -1, *cand.shape[1:]))
            .flatten(0, 1)
            .clone()
        )

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
        self.distill_seconds = float(extra.get("distill_seconds", 0.0))

    # ---------------------------------------------------------------------------------------- export
    def synthetic_set(self):
        from ddlight.data.synthetic import SyntheticSet

        return SyntheticSet(
            images=self.images.detach().float().cpu().clone(),
            labels=self.export_labels(),
            mean=self.mean,
            std=self.std,
            num_classes=self.num_classes,
            method=self.method_name,
            dataset=self.dataset_name,
            ipc=self.hparams.ipc,
            iteration=int(self.global_step),
            seed=int(self.hparams.seed),
            config=self.export_config(),
            extra=self.export_extra(),
        )

    def export_labels(self) -> torch.Tensor:
        return self.labels.detach().cpu().clone()

    def export_extra(self) -> dict[str, Any]:
        return {"distill_seconds": self.distill_seconds}

    def export_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"model": jsonable(dict(self.hparams))}
        if self._trainer is not None and self.trainer.datamodule is not None:
            cfg["data"] = jsonable(dict(getattr(self.trainer.datamodule, "hparams", {})))
        return cfg

    @property
    def export_path(self) -> Path:
        if self.hparams.export_dir:
            return Path(self.hparams.export_dir)
        if self._trainer is not None and self.trainer.log_dir:
            return Path(self.trainer.log_dir)
        return Path(self.trainer.default_root_dir)

    @rank_zero_only
    def export(self) -> Path:
        syn = self.synthetic_set()
        out = self.export_path
        path = syn.save(out / "synthetic.pt")
        syn.save_grid(out / "grid.png")
        return path

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ddlight"] = {
            "mean": list(self.mean),
            "std": list(self.std),
            "num_classes": self.num_classes,
            "dataset": self.dataset_name,
            "distill_seconds": self.distill_seconds,
        }
        if self.images is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            self.export()

    def on_train_end(self) -> None:
        rank_zero_info(
            f"[ddlight] distillation compute: {self.distill_seconds:.1f} s in {self.global_step} steps"
        )

    def on_fit_end(self) -> None:
        # on_fit_end (not on_train_end) so that a max_steps=0 run still exports its initial set: that is
        # how the "initialisation only" rows of the study are produced.
        path = self.export()
        if path is not None:
            rank_zero_info(f"[ddlight] synthetic set written to {path}")
        self.log_grid()

    # ------------------------------------------------------------------------------------ tensorboard
    @rank_zero_only
    def log_grid(self) -> None:
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        exp.add_image("synthetic/grid", self.synthetic_set().grid_tensor(), int(self.global_step))

    def maybe_log_grid(self) -> None:
        every = self.hparams.grid_every
        if every and self.global_step % every == 0:
            self.log_grid()

    def configure_optimizers(self):
        raise NotImplementedError
