"""DATM/PAD's initial synthetic set: real images the experts classify correctly, labelled by the experts.

DATM's ``pix_init: samples_predicted_correctly`` keeps, per class, real images the label expert classifies
correctly; the soft labels are the mean logits of the experts that classify each image correctly, at
epoch ``label_expert_epoch`` (``Label_Model_Timestamp``). Deliberate differences:

* ``init: noise`` (which DATM's label code does not support: its noise branch leaves the labels undefined)
  starts each class's soft label at the mean logits of the real images of that class that the experts
  classify correctly.
* ``init_from`` (a start shared with another implementation, e.g. the parity harness) is taken as given:
  its soft labels, or for hard labels the mean logits of the experts that classify each image correctly.
* The correct-classification search draws a pool of ``init_pool`` (at least ``2 * ipc``) real images per
  class instead of scanning the whole class; if fewer than ``ipc`` are correct, wrongly classified ones
  fill the gap, with a warning.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.func import functional_call

from ddlight.data.synthetic import SyntheticSet
from ddlight.methods.trajectory.buffer import ExpertBuffer
from ddlight.models.init import mix_seed
from ddlight.utils.classwise import class_index, sample_per_class


@torch.no_grad()
def expert_logits(
    net: nn.Module,
    buffer: ExpertBuffer,
    unflatten: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    images: torch.Tensor,
    experts: Sequence[int],
    epoch: int,
    device: torch.device,
) -> torch.Tensor:
    """(E, N, K) logits of ``experts`` at trajectory row ``epoch`` on ``images`` (eval mode, as DATM)."""
    net = copy.deepcopy(net).to(device).eval()
    x = images.to(device)
    out = []
    for e in experts:  # a handful of experts, once, at set-up
        row = buffer.load_expert(e, mmap=True)[epoch].to(device)
        params = unflatten(row)
        out.append(torch.cat([functional_call(net, params, (c,)) for c in x.split(1024)]).float().cpu())
    return torch.stack(out)


def candidates(
    dm: Any, ipc: int, init_pool: int, seed: int, normalize: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """``pool`` seeded real candidates per class (class-major, normalised) for the experts to label."""
    gen = torch.Generator().manual_seed(mix_seed(seed, 17))
    table, counts = class_index(dm.train_labels, dm.num_classes)
    pool = min(int(counts.min()), max(init_pool, 2 * ipc))
    return normalize(dm.train_images[sample_per_class(table, counts, pool, gen).flatten()]), pool


def correctly_classified(correct: torch.Tensor, k: int, pool: int, ipc: int) -> tuple[torch.Tensor, int]:
    """Rows (class-major, ``ipc`` per class) of the ``k * pool`` candidates, those the first expert
    classifies correctly first, and how many of them it misclassifies (a class with fewer than ``ipc``
    correct ones)."""
    first = correct[0].view(k, pool)
    cols = torch.argsort((~first).to(torch.int8), dim=1, stable=True)[:, :ipc]  # correct first
    wrong = int((~first.gather(1, cols)).sum())
    rows = (torch.arange(k)[:, None] * pool + cols).flatten()
    return rows, wrong


def class_typical_labels(
    logits: torch.Tensor, correct: torch.Tensor, k: int, pool: int, ipc: int
) -> torch.Tensor:
    """(k * ipc, k) soft labels: every image of a class gets the mean logits of that class's correctly
    classified candidates. A noise image carries no class evidence, so its label starts there."""
    e = logits.shape[0]
    per_class = logits.view(e, k, pool, k).permute(0, 2, 1, 3).reshape(-1, k, k)
    ok = correct.view(e, k, pool).permute(0, 2, 1).reshape(-1, k)
    return mean_where(per_class, ok).repeat_interleave(ipc, 0)


def mean_where(values: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (E, N, K) over E where ``ok`` (E, N) holds; the plain mean where it never does
    (DATM would divide by zero there)."""
    w = ok.to(values.dtype).unsqueeze(-1)
    count = w.sum(0)
    return torch.where(count > 0, (values * w).sum(0) / count.clamp(min=1), values.mean(0))


def correct_start(
    cand: torch.Tensor, logits: torch.Tensor, correct: torch.Tensor, pool: int, ipc: int, who: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """DATM's ``samples_predicted_correctly`` on ``k * pool`` class-major candidates: the images (the first
    expert decides which qualify) and their mean logits over the experts that classify each correctly."""
    k = correct.shape[1] // pool
    rows, wrong = correctly_classified(correct, k, pool, ipc)
    if wrong:
        rank_zero_warn(
            f"{who} init: {wrong} of {k * ipc} initial images are misclassified by the first label expert "
            f"(fewer than ipc={ipc} correct among {pool} candidates of some class); raise init_pool"
        )
    return cand[rows].clone(), mean_where(logits[:, rows], correct[:, rows])


def given_logits(
    path: str,
    images: torch.Tensor,
    logits_of: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """The soft labels of the ``init_from`` set at ``path`` whose ``images`` start the run: its own logits,
    or for hard labels ``logits_of(images, labels)``'s mean over the experts that are right."""
    given = SyntheticSet.load(path)
    if given.is_soft:
        return given.labels.float().clone()
    logits, correct = logits_of(images, given.labels.cpu())
    return mean_where(logits, correct)
