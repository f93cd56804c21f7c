"""EL2N difficulty scores (Paul et al., 2021), the order behind PAD's FIEX curriculum.

PAD reads precomputed per-class difficulty orders (``data_indices/*.pt`` of NUS-HPC-AI-Lab/PAD, produced
with DeepCore). We compute EL2N here instead: ``el2n_models`` networks trained ``el2n_epochs`` epochs each,
score = ||softmax(f(x)) - onehot(y)||_2 averaged over the networks (Paul et al. score 10 networks at
epoch 20). A low score is an easy sample.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader

from ddlight.data.base import TensorBatchDataset
from ddlight.methods.trajectory.buffer import Stream
from ddlight.methods.trajectory.fiex import shuffled_loader
from ddlight.models.convnet import use_lean_graph
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DSA


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample EL2N: L2 norm of the softmax's error against the one-hot label."""
    probs = logits.float().softmax(dim=1)
    return (probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)).norm(dim=1)


def el2n_scores(
    nets: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """EL2N of every sample of uint8 ``images`` averaged over ``nets`` (N,), in the images' order.

    Networks are evaluated in eval mode on the un-augmented images, as Paul et al. score them;
    ``normalize`` is the data module's uint8 -> input map (so ZCA applies here too).
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
                x = normalize(images[sl]).to(device)
                y = labels[sl].to(device)
                acc = torch.zeros(len(y), device=device)
                for net in nets:
                    acc += el2n(net(x), y)
                total[sl] = acc.cpu()
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)
    return total / len(nets)


def _train_epoch_plain(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    loader: DataLoader,
    steps: int,
    dsa: DSA | None,
    gen: torch.Generator,
    device: torch.device,
) -> None:
    """One epoch outside Lightning's loop, for the EL2N networks (nothing of them is kept but scores)."""
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        x, y = x.to(device), y.to(device)
        if dsa is not None:
            x = dsa(x, generator=gen, share_op=True)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def el2n_network(
    template: nn.Module,
    ds: TensorBatchDataset,
    index: int,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    steps_per_epoch: Callable[[int], int],
    dsa: DSA | None,
    device: torch.device,
) -> nn.Module:
    """EL2N network ``index``: ``template`` re-initialised from its own seed and trained ``epochs`` epochs
    on the whole set (it ranks the samples, so no curriculum), with the experts' optimiser, augmentation
    and epoch length."""
    net = use_lean_graph(copy.deepcopy(template), False)  # trained first-order
    net = reinitialize(net, mix_seed(seed, Stream.EL2N_INIT, index)).to(device)
    net.train()
    opt = optimizer(net)
    gen = torch.Generator().manual_seed(mix_seed(seed, Stream.EL2N_DSA, index))
    with torch.enable_grad():
        for e in range(epochs):
            batch_seed = mix_seed(seed, Stream.EL2N_BATCHES, index, e)
            loader = shuffled_loader(ds, torch.arange(len(ds)), batch_size, batch_seed)
            _train_epoch_plain(net, opt, loader, steps_per_epoch(len(loader)), dsa, gen, device)
    return net


def cached_scores(path: Path, want: dict[str, Any]) -> torch.Tensor | None:
    """The scores saved at ``path`` if they were computed for ``want`` (data digest, size, settings),
    else None: scores of other data or settings would rank the wrong samples."""
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if all(saved.get(k) == v for k, v in want.items()) and saved["scores"].shape == (want["num_train"],):
        rank_zero_info(f"[ddlight] EL2N scores reused from {path}")
        return saved["scores"]
    rank_zero_info(f"[ddlight] {path} belongs to other data or settings; recomputing")
    return None
