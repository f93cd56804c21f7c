"""Where a synthetic set starts besides a random draw: another set's images (``init_from``) and greedy
k-center picks (``init: kcenter``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ddlight.data.base import RealDataModule
from ddlight.data.synthetic import SyntheticSet
from ddlight.data.synthetic_module import check_matches
from ddlight.utils.classwise import sample_per_class


def images_from(path: str, dm: RealDataModule, ipc: int) -> torch.Tensor:
    """``path``'s images, refused unless they are this run's set: the data module's data and
    normalisation (:func:`~ddlight.data.synthetic_module.check_matches`, as for an evaluated set), and
    ``ipc`` images of every class in class-major order (what ``labels`` assumes)."""
    syn = SyntheticSet.load(path)
    check_matches(syn, dm, path)
    k = dm.num_classes
    # Soft labels are logits, not the class an image was drawn for (a misclassified start image has
    # another argmax): only their count is checked.
    arranged = syn.is_soft or torch.equal(syn.hard_labels.cpu(), torch.arange(k).repeat_interleave(ipc))
    if syn.images.shape[0] != k * ipc or not arranged:
        raise ValueError(
            f"init_from must be a set of this run's size: {path} has {syn.images.shape[0]} images "
            f"(labels {syn.hard_labels.bincount(minlength=k).tolist()} per class); expected {k * ipc} "
            f"(ipc {ipc}), {ipc} per class, class 0 first"
        )
    return syn.images.detach().float().clone()


def kcenter_images(
    dm: Any, table: torch.Tensor, counts: torch.Tensor, gen: torch.Generator, net: nn.Module, ipc: int
) -> torch.Tensor:
    """Greedy k-center per class in the embedding of a random network ``net`` (all classes at once).

    Starts from the candidate nearest the class mean, then repeatedly adds the candidate farthest from
    the chosen ones: a spread-out, representative start instead of a random one.
    """
    k = dm.num_classes
    pool = min(int(counts.min()), max(10 * ipc, 200))
    cand_idx = sample_per_class(table, counts, pool, gen)  # (K, pool)
    cand = dm.normalize(dm.train_images[cand_idx.flatten()])  # whitened like its batches under ZCA
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
