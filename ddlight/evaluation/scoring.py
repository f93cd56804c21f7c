"""The evaluator's baselines and scores: a set's accuracy next to a random real subset of the same IPC and
the full real training set under the same recipe, and DD-Ranking's HLR / IOR / LRS / ARS from them
(formulas in :mod:`ddlight.ops.scores`).

What DD-Ranking's code does and this does not: it reports the best test accuracy seen during training
and picks the learning rate by test accuracy. Here every accuracy is the final epoch's, and a searched
rate is chosen on a validation split held out of the real training set (stratified, seeded); the random
subsets and the full-data runs train only on the rest, so no image of the validation split, and no
test image, takes part in any choice.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddlight.data.base import batch_loader
from ddlight.data.subsets import random_subset, validation_split
from ddlight.data.zca import tensor_sha256
from ddlight.evaluation.recipe import LEARNED, SEARCH, Recipe
from ddlight.evaluation.runs import Runs
from ddlight.ops.scores import FORMULAS, augmentation_robust, label_robust
from ddlight.utils.io import atomic_json_dump, atomic_torch_save

# DD-Ranking's grid (``_hyper_param_search_for_*_label``); one network per rate, as there.
DEFAULT_LR_GRID = (0.001, 0.005, 0.01, 0.05, 0.1)
TEACHER_LABELS = "mean logits of the full-data networks (DD-Ranking's relabelling)"


@dataclass
class Baselines:
    """What the scored protocol runs beside the set, and how.

    w, gamma: the LRS and ARS weights (DD-Ranking's defaults 0.5). full_epochs / full_runs / full_lr: the
    full-data runs' length, count and rate (the set's recipe otherwise; its 300 epochs over 60,000 images
    are hours on a CPU, so a CPU user shortens them and the results say so). cache_dir: where full-data
    results and networks are kept, keyed by data, architecture and recipe, so they are trained once.
    seed: the random subsets' draw.
    """

    w: float = 0.5
    gamma: float = 0.5
    full_epochs: int | None = None
    full_runs: int | None = None
    full_lr: float = 0.01
    cache_dir: str = "cache/full_data"
    seed: int = 0


class RealSplits:
    """The real training set split for scoring: validation indices and the pool everything else draws
    from, with loaders that normalise uint8 images a batch at a time."""

    def __init__(self, real: Any, fraction: float, seed: int) -> None:
        real.setup()
        self.real = real
        self.val, self.pool = validation_split(real.train_labels, real.num_classes, fraction, seed)
        self.fraction, self.seed = fraction, seed

    def val_loader(self) -> Iterable:
        images, labels = self.real.train_images[self.val], self.real.train_labels[self.val]
        return batch_loader(self.real.dataset(images, labels), self.real.eval_batch_size, False)

    def subset(self, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = random_subset(self.real.train_labels, self.pool, self.real.num_classes, ipc, seed)
        return self.real.normalize(self.real.train_images[idx]), self.real.train_labels[idx]

    def describe(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "images": len(self.val)}


def search_lr(
    net: nn.Module,
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_loader: Iterable,
    grid: Sequence[float],
    dataset: str,
) -> tuple[float, dict[str, float]]:
    """The grid rate whose one-network training on ``images`` scores best on ``val_loader`` (first of
    ties). It is handed no test data: nothing here can select on it."""
    table: dict[str, float] = {}
    for lr in grid:
        res = Runs(copy.deepcopy(net), recipe.but(lr=float(lr), num_runs=1)).fit(
            images, labels, val_loader, dataset
        )
        table[f"{lr:g}"] = res["mean"]
    best = max(grid, key=lambda lr: table[f"{lr:g}"])  # max keeps the first of equal values
    return float(best), table


def _brief(res: dict[str, Any]) -> dict[str, Any]:
    keys = ("mean", "std", "accuracies", "lr", "dsa", "labels", "epochs", "num_runs", "train_seconds_per_run")
    return {k: res[k] for k in keys if k in res}


def full_data_key(net: nn.Module, splits: RealSplits, recipe: dict[str, Any]) -> str:
    """Digest of what a full-data result depends on: the data (identity, the pool's exact content), the
    architecture (its module tree) and the recipe."""
    real = splits.real
    pool = tensor_sha256(real.train_images[splits.pool], real.train_labels[splits.pool])
    what = {"data": real.identity(), "pool": pool, "net": str(net), "recipe": recipe}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def full_data(
    net: nn.Module, recipe: Recipe, splits: RealSplits, cfg: Baselines, test_loader: Iterable, dataset: str
) -> tuple[dict, Runs]:
    """The full-data result and its trained runs (the soft-label teacher), from the cache if there."""
    runs = cfg.full_runs or recipe.num_runs
    key_recipe = {
        k: getattr(recipe, k) for k in ("momentum", "weight_decay", "schedule", "dsa", "dsa_strategy", "seed")
    }
    key_recipe.update(epochs=cfg.full_epochs or recipe.epochs, num_runs=runs, lr=cfg.full_lr, batch_size=256)
    teacher = Runs(copy.deepcopy(net), recipe.but(lr=cfg.full_lr, num_runs=runs, epochs=key_recipe["epochs"]))
    key = full_data_key(net, splits, key_recipe)
    base = Path(cfg.cache_dir) / key
    json_path, nets_path = base.with_suffix(".json"), base.with_suffix(".pt")
    if json_path.exists() and nets_path.exists():
        teacher.nets.load_state_dict(torch.load(nets_path, weights_only=True))
        res = json.loads(json_path.read_text())
        return {**res, "cached": True, "cache_file": str(json_path)}, teacher
    real = splits.real
    res = teacher.fit(
        real.train_images[splits.pool],
        real.train_labels[splits.pool],
        test_loader,
        dataset,
        batch_size=256,
        normalize=real.normalize,
    )
    res = {**_brief(res), "recipe": key_recipe, "images": len(splits.pool)}
    atomic_torch_save(teacher.nets.state_dict(), nets_path)
    atomic_json_dump(res, json_path)
    return {**res, "cached": False, "cache_file": str(json_path)}, teacher


@torch.inference_mode()
def teacher_logits(teacher: Runs, images: torch.Tensor) -> torch.Tensor:
    """Mean logits of the full-data networks: how DD-Ranking relabels its random subset for soft sets."""
    teacher.nets.eval()
    return torch.stack([net(images) for net in teacher.nets]).mean(0)


def score(
    net: nn.Module,
    recipe: Recipe,
    own: dict[str, Any],
    syn: Any,
    splits: RealSplits,
    test_loader: Iterable,
    cfg: Baselines,
    lr_grid: Sequence[float] = DEFAULT_LR_GRID,
) -> dict[str, Any]:
    """Every baseline run and the scores, for a set whose own (augmented) result is ``own`` (trained at
    ``own["lr"]``): the same recipe on fresh networks, nothing called back."""
    ipc = syn.images.shape[0] // syn.num_classes
    soft = syn.labels.dim() == 2
    lr, dataset = own["lr"], syn.dataset

    def run(images, labels, **changes):
        return _brief(
            Runs(copy.deepcopy(net), recipe.but(**changes)).fit(images, labels, test_loader, dataset)
        )

    full, teacher = full_data(net, recipe, splits, cfg, test_loader, dataset)
    rand_x, rand_y = splits.subset(ipc, cfg.seed)
    if soft:
        rand_y = teacher_logits(teacher, rand_x)
    rand_lr, rand_search = lr, None
    if recipe.lr in (LEARNED, SEARCH):  # a learned rate belongs to its set: search one
        rand_lr, rand_search = search_lr(net, recipe, rand_x, rand_y, splits.val_loader(), lr_grid, dataset)
    runs = {
        "full": full,
        "random": run(rand_x, rand_y, lr=rand_lr),
        "set_no_aug": run(syn.images, syn.labels, lr=lr, dsa=False),
        "random_no_aug": run(rand_x, rand_y, lr=rand_lr, dsa=False),
    }
    runs["set_hard"] = run(syn.images, syn.labels.argmax(1), lr=lr) if soft else _brief(own)
    if rand_search is not None:
        runs["random"]["lr_search"] = rand_search
    scores = label_robust(full["mean"], runs["set_hard"]["mean"], own["mean"], runs["random"]["mean"], cfg.w)
    scores |= augmentation_robust(
        own["mean"],
        runs["random"]["mean"],
        runs["set_no_aug"]["mean"],
        runs["random_no_aug"]["mean"],
        cfg.gamma,
    )
    protocol = {
        "random_subset": f"{ipc} per class, seed {cfg.seed}, from the training set less the validation split",
        "random_labels": TEACHER_LABELS if soft else "hard",
        "validation": splits.describe(),
        "baselines": asdict(cfg),
    }
    return {"scores": scores, "baselines": runs, "protocol": protocol, "formulas": FORMULAS}
