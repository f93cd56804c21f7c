"""PAD stage 1: expert trajectories trained on an EL2N difficulty curriculum.

Trajectory matching (MTT, DATM, PAD) distils against the parameters that networks trained on the real
data pass through. This stage trains those networks ("experts") and stores every epoch's parameters in a
buffer that the PAD distiller reads. PAD's contribution here is the data scheduler ("filtering
information extraction", ``buffer/buffer_CL.py`` of NUS-HPC-AI-Lab/PAD): each epoch trains only on the
samples a difficulty score admits - the easiest ``init_ratio`` of every class first, harder ones added
until ``add_end_epoch``, then the easiest removed again late in training - so that early trajectory
segments (used for small IPC) carry easy patterns and late ones (large IPC) hard ones.

Recipe, as in the references (MTT ``buffer.py``, DATM/PAD ``buffer/buffer_*.py``): SGD at a constant
``lr_teacher = 0.01`` with momentum 0 and weight decay 0, batch 256, DSA augmentation of every training
batch, parameters recorded at initialisation and after every epoch. Deliberate differences:

* PAD/DATM train experts with GSAM (sharpness-aware, from FTD); we keep MTT's plain SGD, which the
  distiller's own student SGD mirrors, and avoid a second optimiser implementation.
* PAD reads precomputed per-class difficulty orders (``data_indices/*.pt`` produced with DeepCore). We
  compute EL2N (Paul et al., 2021) here: ``el2n_models`` networks trained ``el2n_epochs`` epochs each,
  score = ||softmax(f(x)) - onehot(y)||_2 averaged over the networks.
* MNIST uses no ZCA (MTT/PAD whiten only CIFAR) and DSA without flip (``strategy_for``).

Lightning mapping: one Lightning epoch is one epoch of the current expert, so ``trainer.max_epochs`` must
be ``num_experts * epochs`` (or -1 to let the module compute it). The buffer itself is the checkpoint:
experts are written only when complete, and a rerun of the same command trains only the experts the
manifest lacks, each from the same seed-derived initialisation and batch order it would have had in an
uninterrupted run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader

from ddlight.data.base import TensorBatchDataset
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DEFAULT_STRATEGY, DSA, strategy_for
from ddlight.utils.classwise import normalize_uint8
from ddlight.utils.io import atomic_json_dump, atomic_torch_save

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EL2N_FILE = "el2n.pt"

# PAD README's buffer command for CIFAR-10 (its argparse defaults, init_ratio=1.0 and add_end_epoch=100,
# switch the curriculum off and are not what the paper ran).
FIEX_DEFAULTS: dict[str, float | int] = {
    "init_ratio": 0.75,
    "add_end_epoch": 20,
    "rm_epoch_first": 40,
    "rm_epoch_second": 60,
    "rm_easy_ratio_first": 0.1,
    "rm_easy_ratio_second": 0.2,
}


def expert_filename(index: int) -> str:
    return f"expert_{index:03d}.pt"


class Stream(IntEnum):
    """Tags of the buffer's random streams, mixed with the run seed and indices by ``mix_seed``.

    Every stream (an expert's initialisation, its batch order, its augmentation) has its own seed derived
    from the run seed and the expert index, so expert ``i`` is the same whether it is trained first, after
    a restart, or alone. The values are part of the buffer's reproducibility: never renumber them.
    """

    EXPERT_INIT = 101
    BATCHES = 102
    DSA = 103
    EL2N_INIT = 111
    EL2N_BATCHES = 112
    EL2N_DSA = 113


def flatten_parameters(net: nn.Module) -> torch.Tensor:
    """All parameters (not buffers) in ``named_parameters`` order as one float32 CPU vector."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).to("cpu", torch.float32)


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' bytes: ties a buffer and its EL2N scores to the exact training set."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- EL2N


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample EL2N: L2 norm of the softmax's error against the one-hot label."""
    probs = logits.float().softmax(dim=1)
    return (probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)).norm(dim=1)


def el2n_scores(
    nets: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """EL2N of every sample of uint8 ``images`` averaged over ``nets`` (N,), in the images' order.

    Networks are evaluated in eval mode on the un-augmented images, as Paul et al. score them.
    """
    if not nets:
        raise ValueError("el2n_scores needs at least one network")
    device = torch.device(device) if device is not None else next(nets[0].parameters()).device
    labels = labels.long()
    total = torch.zeros(len(labels), dtype=torch.float32)
    modes = [net.training for net in nets]
    try:
        for net in nets:
            net.eval()
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                sl = slice(start, start + batch_size)
                x = normalize_uint8(images[sl], mean, std).to(device)
                y = labels[sl].to(device)
                acc = torch.zeros(len(y), device=device)
                for net in nets:
                    acc += el2n(net(x), y)
                total[sl] = acc.cpu()
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)
    return total / len(nets)


# ---------------------------------------------------------------------------------------------- FIEX


def fiex_phase(
    epoch: int,
    init_ratio: float = FIEX_DEFAULTS["init_ratio"],
    add_end_epoch: int = FIEX_DEFAULTS["add_end_epoch"],
    rm_epoch_first: int = FIEX_DEFAULTS["rm_epoch_first"],
    rm_epoch_second: int = FIEX_DEFAULTS["rm_epoch_second"],
    rm_easy_ratio_first: float = FIEX_DEFAULTS["rm_easy_ratio_first"],
    rm_easy_ratio_second: float = FIEX_DEFAULTS["rm_easy_ratio_second"],
) -> tuple[float, float]:
    """``(keep, drop)`` for ``epoch`` (0-based): each class trains on its ranks in
    ``[floor(drop * n_c), floor(keep * n_c))`` of the easy-to-hard order.

    The branch order is PAD's: the adding phase wins over the removing ones when they overlap.
    """
    if not 0.0 < init_ratio <= 1.0:
        raise ValueError(f"init_ratio must be in (0, 1], got {init_ratio}")
    for name, r in (
        ("rm_easy_ratio_first", rm_easy_ratio_first),
        ("rm_easy_ratio_second", rm_easy_ratio_second),
    ):
        if not 0.0 <= r < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {r}")
    if epoch <= add_end_epoch:
        # Linear growth from init_ratio to 1 at add_end_epoch (PAD's linear_cl_scheduler_acse); an
        # add_end_epoch of 0 would divide by zero there and means "everything from the start" here.
        keep = (
            1.0 if add_end_epoch <= 0 else min(1.0, init_ratio + (1.0 - init_ratio) * epoch / add_end_epoch)
        )
        return keep, 0.0
    if epoch <= rm_epoch_first:
        return 1.0, 0.0
    if epoch <= rm_epoch_second:
        return 1.0, float(rm_easy_ratio_first)
    return 1.0, float(rm_easy_ratio_second)


def rank_within_class(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's 0-based rank by ascending score inside its class, and every sample's class size."""
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(labels[order], stable=True)]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - starts[labels[order]]
    return rank, counts[labels]


def fiex_schedule(
    scores: torch.Tensor,
    epoch: int,
    labels: torch.Tensor | None = None,
    **knobs: float | int,
) -> torch.Tensor:
    """Sorted indices of the samples active at 0-based ``epoch`` (easy = low score).

    With ``labels`` the fractions apply inside every class, as PAD slices its (classes, per_class)
    difficulty table, so the class balance never shifts; without, over the whole set. ``knobs`` are
    those of :func:`fiex_phase` (PAD's ``buffer_CL.py`` arguments).
    """
    scores = scores.detach().to("cpu", torch.float32)
    if labels is None:
        labels = torch.zeros(len(scores), dtype=torch.long)
    labels = labels.to("cpu", torch.long)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and scores {tuple(scores.shape)} must match")
    keep, drop = fiex_phase(epoch, **knobs)
    rank, size = rank_within_class(scores, labels)
    # floor(p * n_c) as PAD's int(p * data_size_by_class); float64 keeps e.g. 0.1 * 60 from landing at 5.99.
    lo = torch.floor(drop * size.double()).long()
    hi = torch.floor(keep * size.double()).long()
    return torch.nonzero((rank >= lo) & (rank < hi)).flatten()


def shuffled_loader(ds: TensorBatchDataset, indices: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """One epoch over ``indices`` in a seeded random order, the last batch possibly short (MTT's
    ``shuffle=True`` loader). The batches are index tensors cut from one permutation, so no per-sample
    Python runs while loading."""
    perm = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))]
    return DataLoader(ds, sampler=list(perm.split(batch_size)), batch_size=None)


# ---------------------------------------------------------------------------------------------- I/O


class ExpertBuffer:
    """Read side of an expert buffer directory (what the PAD distiller consumes).

    ``manifest.json`` describes the run (parameter layout, network, data, recipe) and lists the completed
    experts; ``expert_XXX.pt`` holds one expert's float32 ``(epochs + 1, P)`` trajectory, row 0 the
    initialisation and row ``e`` the parameters after epoch ``e``, each row the parameters flattened in
    ``named_parameters`` order.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"no expert buffer at {self.root.resolve()} ({MANIFEST} missing)")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: buffer format_version {version}, this code reads {FORMAT_VERSION}")
        self.param_names: list[str] = list(self.manifest["param_names"])
        self.param_shapes: list[tuple[int, ...]] = [tuple(s) for s in self.manifest["param_shapes"]]
        self.param_sizes = [int(torch.Size(s).numel()) for s in self.param_shapes]
        self.num_params = sum(self.param_sizes)
        self.epochs = int(self.manifest["epochs"])

    @property
    def completed(self) -> list[int]:
        return [int(c["index"]) for c in self.manifest["completed"]]

    @property
    def num_completed(self) -> int:
        return len(self.manifest["completed"])

    def load_expert(self, index: int, mmap: bool = False) -> torch.Tensor:
        """Expert ``index``'s ``(epochs + 1, P)`` trajectory.

        ``mmap=True`` maps the file instead of reading it: a distiller that needs two rows per step of a
        100-epoch trajectory then reads two rows' pages, not the whole file.
        """
        if index not in self.completed:
            raise KeyError(f"expert {index} is not in {self.root / MANIFEST} (completed: {self.completed})")
        traj = torch.load(
            self.root / expert_filename(index), map_location="cpu", weights_only=True, mmap=mmap
        )
        want = (self.epochs + 1, self.num_params)
        if tuple(traj.shape) != want:
            raise ValueError(f"{expert_filename(index)} has shape {tuple(traj.shape)}, manifest says {want}")
        return traj

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """One flattened row -> ``{name: tensor}`` views, ready for ``load_state_dict(strict=False)`` or
        ``torch.func.functional_call``."""
        if flat.shape[-1] != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters, got {flat.shape[-1]}")
        chunks = flat.split(self.param_sizes, dim=-1)
        return {
            name: c.reshape(*flat.shape[:-1], *shape)
            for name, c, shape in zip(self.param_names, chunks, self.param_shapes, strict=True)
        }

    def load_el2n(self) -> torch.Tensor:
        return torch.load(self.root / EL2N_FILE, map_location="cpu", weights_only=True)["scores"]


# ---------------------------------------------------------------------------------------------- stage


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _differences(saved: Any, now: Any, key: str = "") -> list[str]:
    """``"recipe.lr: buffer 0.01, now 0.1"`` for every leaf that differs, so the error names the cause."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now)):
            out += _differences(saved.get(k), now.get(k), f"{key}.{k}" if key else k)
        return out
    if saved == now:
        return []
    short = [v if len(repr(v)) <= 60 else "..." for v in (saved, now)]
    return [f"{key}: buffer {short[0]!r}, now {short[1]!r}"]


class ExpertTrainer(L.LightningModule):
    """Trains ``num_experts`` copies of ``net``, one after another, and writes their trajectories.

    Args:
        net: template network (``class_path``); every expert (and every EL2N network) is this network
            re-initialised from a seed derived from ``seed`` and its index.
        num_experts, epochs: how many experts and how many epochs each (MTT/DATM: 100 x 50; PAD's README
            for CIFAR-10: 100 x 100).
        lr, momentum, weight_decay: the experts' constant-rate SGD (``lr_teacher``, ``mom``, ``l2``).
        dsa, dsa_strategy: DSA on every training batch; flip is dropped for digit datasets.
        buffer_dir: output directory; also where an interrupted run is resumed from.
        el2n_models, el2n_epochs: networks and epochs behind the EL2N difficulty scores (Paul et al.'s
            10 networks scored at epoch 20).
        scheduler: use PAD's difficulty curriculum; ``False`` trains every epoch on all data (MTT/DATM).
        init_ratio ... rm_easy_ratio_second: the curriculum, see :func:`fiex_phase`.
        seed: root of every random stream of the buffer (recorded in the manifest).

    Data: the datamodule must expose in-memory uint8 ``train_images`` / ``train_labels`` /
    ``test_images`` / ``test_labels``, ``mean_t`` / ``std_t`` and ``batch_size`` (``RealDataModule``).
    Its own ``train_dataloader`` cannot know the curriculum, so the module serves each epoch's loader
    itself (shuffled, seeded per expert and epoch); ``trainer.limit_train_batches`` still applies, and the
    EL2N networks' epochs honour it too, so a CPU-sized run shortens both alike.
    """

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
        init_ratio: float = 0.75,
        add_end_epoch: int = 20,
        rm_epoch_first: int = 40,
        rm_epoch_second: int = 60,
        rm_easy_ratio_first: float = 0.1,
        rm_easy_ratio_second: float = 0.2,
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
        self.knobs = {
            "init_ratio": init_ratio,
            "add_end_epoch": add_end_epoch,
            "rm_epoch_first": rm_epoch_first,
            "rm_epoch_second": rm_epoch_second,
            "rm_easy_ratio_first": rm_easy_ratio_first,
            "rm_easy_ratio_second": rm_easy_ratio_second,
        }
        fiex_phase(0, **self.knobs)  # validate the ratios now rather than after the EL2N phase
        self.buffer_dir = Path(buffer_dir)
        self.dsa: DSA | None = None
        self.todo: list[int] = []
        self.scores: torch.Tensor | None = None
        self._traj: torch.Tensor | None = None
        self._aug_gen: torch.Generator | None = None
        self._t_expert = 0.0
        self._active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    # ------------------------------------------------------------------ setup and validation

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        trainer, hp = self.trainer, self.hparams
        dm = trainer.datamodule
        missing = [
            a
            for a in ("train_images", "train_labels", "test_images", "test_labels", "mean_t", "std_t")
            if not hasattr(dm, a)
        ]
        if dm is None or missing:
            raise TypeError(
                f"ExpertTrainer needs a RealDataModule-like datamodule with in-memory uint8 tensors; "
                f"{type(dm).__name__} lacks {missing or 'everything'}"
            )
        check_num_classes(self.net, dm, type(self).__name__)
        if trainer.fast_dev_run:
            raise ValueError(
                "ExpertTrainer does not support fast_dev_run (it would write truncated experts into the "
                "buffer); use tiny num_experts/epochs with trainer.limit_train_batches instead"
            )
        if trainer.world_size > 1:
            raise ValueError("ExpertTrainer trains experts one after another on one device; set devices: 1")
        planned = hp.num_experts * hp.epochs
        if trainer.max_epochs not in (-1, planned) or trainer.max_steps != -1:
            raise ValueError(
                f"ExpertTrainer runs one Lightning epoch per expert epoch: set trainer.max_epochs: {planned} "
                f"(num_experts {hp.num_experts} x epochs {hp.epochs}) or -1, and leave max_steps at -1; "
                f"got max_epochs={trainer.max_epochs}, max_steps={trainer.max_steps}"
            )
        reload = trainer.reload_dataloaders_every_n_epochs
        if reload != 1:
            raise ValueError(
                "ExpertTrainer builds each epoch's curriculum subset in its train_dataloader; set "
                f"trainer.reload_dataloaders_every_n_epochs: 1 (got {reload})"
            )
        dm.setup("fit")
        self.dataset_name = type(dm).__name__
        self.dsa = DSA(strategy_for(self.dataset_name, hp.dsa_strategy)) if hp.dsa else None
        self.train_digest = tensor_digest(dm.train_images, dm.train_labels)

        manifest = self._open_manifest()
        done = {int(c["index"]) for c in manifest["completed"]}
        self.todo = [i for i in range(hp.num_experts) if i not in done]
        # The rerun of an interrupted command starts at Lightning epoch 0 with fewer experts to go.
        trainer.fit_loop.max_epochs = len(self.todo) * hp.epochs
        rank_zero_info(
            f"[ddlight] expert buffer {self.buffer_dir}: {len(done)} of {hp.num_experts} experts present, "
            f"training {self.todo if len(self.todo) <= 12 else f'{len(self.todo)} experts'}"
        )
        # The datamodule's loader serves the whole set in a fixed way; this module's loader applies the
        # curriculum. Lightning has no public switch for "model's loader despite a datamodule".
        data_source = getattr(trainer.fit_loop, "_data_source", None)
        if data_source is None:
            raise RuntimeError(
                "this Lightning version has no fit_loop._data_source; ExpertTrainer needs updating"
            )
        data_source.instance = self

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        raise RuntimeError(
            "ExpertTrainer resumes from its buffer, not from Lightning checkpoints: rerun the same command "
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
        limit = self.trainer.limit_train_batches
        return {
            "format_version": FORMAT_VERSION,
            "epochs": hp.epochs,
            "param_names": list(names),
            "param_shapes": list(shapes),
            "num_params": int(sum(p.numel() for p in self.net.parameters())),
            "net": _json_safe(net_cfg),
            "dataset": {
                "name": self.dataset_name,
                "num_train": len(dm.train_labels),
                "num_classes": int(dm.num_classes),
                "train_sha256": self.train_digest,
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
                "limit_train_batches": limit,
                "dsa_strategy": self.dsa.strategy if self.dsa is not None else "none",
                "scheduler": hp.scheduler,
                "fiex": dict(self.knobs) if hp.scheduler else None,
                "el2n": {"models": hp.el2n_models, "epochs": hp.el2n_epochs} if hp.scheduler else None,
            },
        }

    def _open_manifest(self) -> dict[str, Any]:
        self.buffer_dir.mkdir(parents=True, exist_ok=True)
        path = self.buffer_dir / MANIFEST
        ident = _json_safe(self._manifest_identity())
        if path.exists():
            manifest = json.loads(path.read_text())
            diff = _differences({k: manifest.get(k) for k in ident}, ident)
            if diff:
                raise ValueError(
                    f"{path} was written by a different run ({'; '.join(diff)}); experts of different "
                    "recipes must not share a buffer - choose another buffer_dir or delete this one"
                )
        else:
            manifest = {**ident, "completed": []}
        manifest["num_experts"] = self.hparams.num_experts
        manifest["el2n_file"] = EL2N_FILE if self.hparams.scheduler else None
        atomic_json_dump(manifest, path)
        self.manifest = manifest
        return manifest

    # ------------------------------------------------------------------ EL2N phase

    def _steps_per_epoch(self, n_batches: int) -> int:
        limit = self.trainer.limit_train_batches
        if isinstance(limit, int):
            return min(limit, n_batches)
        return int(n_batches * limit)

    def _train_epoch_plain(
        self, net: nn.Module, opt: torch.optim.Optimizer, loader: DataLoader, gen: torch.Generator
    ) -> None:
        """One epoch outside Lightning's loop, for the EL2N networks (nothing of them is kept but scores)."""
        steps = self._steps_per_epoch(len(loader))
        for step, (x, y) in enumerate(loader):
            if step >= steps:
                break
            x, y = x.to(self.device), y.to(self.device)
            if self.dsa is not None:
                x = self.dsa(x, generator=gen, share_op=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

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
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if all(saved.get(k) == v for k, v in want.items()) and saved["scores"].shape == (n,):
                rank_zero_info(f"[ddlight] EL2N scores reused from {path}")
                return saved["scores"]
            rank_zero_info(f"[ddlight] {path} belongs to other data or settings; recomputing")
        nets = []
        ds = TensorBatchDataset(dm.train_images, dm.train_labels, dm.mean_t, dm.std_t)
        t0 = time.perf_counter()
        for m in range(hp.el2n_models):
            net = reinitialize(copy.deepcopy(self.net), mix_seed(hp.seed, Stream.EL2N_INIT, m)).to(
                self.device
            )
            net.train()
            opt = torch.optim.SGD(
                net.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
            gen = torch.Generator().manual_seed(mix_seed(hp.seed, Stream.EL2N_DSA, m))
            with torch.enable_grad():
                for e in range(hp.el2n_epochs):
                    seed = mix_seed(hp.seed, Stream.EL2N_BATCHES, m, e)
                    loader = shuffled_loader(ds, torch.arange(n), dm.batch_size, seed)
                    self._train_epoch_plain(net, opt, loader, gen)
            nets.append(net)
            rank_zero_info(
                f"[ddlight] EL2N network {m + 1}/{hp.el2n_models} trained ({time.perf_counter() - t0:.0f} s)"
            )
        scores = el2n_scores(
            nets, dm.train_images, dm.train_labels, dm.mean_t, dm.std_t, dm.eval_batch_size, self.device
        )
        seconds = time.perf_counter() - t0
        atomic_torch_save({**want, "format_version": FORMAT_VERSION, "scores": scores}, path)
        rank_zero_info(f"[ddlight] EL2N scores of {n} samples written to {path} in {seconds:.0f} s")
        if self.logger is not None:
            self.logger.log_metrics({"el2n/mean": float(scores.mean()), "el2n/seconds": seconds}, 0)
        return scores

    def on_fit_start(self) -> None:
        if self.hparams.scheduler and self.todo:
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
        return fiex_schedule(self.scores, epoch, dm.train_labels, **self.knobs)

    def train_dataloader(self) -> DataLoader:
        dm, hp = self.trainer.datamodule, self.hparams
        ds = TensorBatchDataset(dm.train_images, dm.train_labels, dm.mean_t, dm.std_t)
        if not self.todo:  # every expert is already in the buffer: an empty epoch ends fit at once
            return shuffled_loader(ds, torch.zeros(0, dtype=torch.long), dm.batch_size, 0)
        expert, epoch = self._where()
        idx = self.active_indices(epoch)
        self._active = len(idx)
        return shuffled_loader(ds, idx, dm.batch_size, mix_seed(hp.seed, Stream.BATCHES, expert, epoch))

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(
            self.net.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )

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

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
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
        from ddlight.methods.evaluator import accuracy

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
        self._save_expert(expert, test_acc, seconds)
        rank_zero_info(f"[ddlight] expert {expert} done in {seconds:.0f} s, test acc {test_acc:.4f}")

    def _save_expert(self, expert: int, test_acc: float, seconds: float) -> None:
        # The trajectory first, then the manifest: a crash in between leaves an unlisted file that the
        # rerun overwrites, never a listed expert without its file.
        atomic_torch_save(self._traj.clone(), self.buffer_dir / expert_filename(expert))
        entry = {
            "index": expert,
            "file": expert_filename(expert),
            "test_acc": test_acc,
            "seconds": round(seconds, 2),
        }
        completed = [c for c in self.manifest["completed"] if int(c["index"]) != expert] + [entry]
        self.manifest["completed"] = sorted(completed, key=lambda c: int(c["index"]))
        atomic_json_dump(self.manifest, self.buffer_dir / MANIFEST)
