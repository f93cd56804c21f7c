"""DataDAM: dataset distillation by attention matching (Sajedi et al., ICCV 2023).

Each step draws a class-balanced real batch, augments a class's real and synthetic images with the same
DSA transform, passes both through a randomly initialised frozen network, and moves the synthetic images
so that, per class, (a) the mean L2-normalised spatial attention map of every block but the last and (b)
the mean final embedding match the real ones.

Paper vs released code, both selectable (nothing is silently changed):

============================  =====================  =============================================
setting                       paper (defaults here)  authors' code (``configs/*_reference_code.yaml``)
============================  =====================  =============================================
attention power ``power``     4                      1
attention weight              1                      100 (``sam_weight: 100``)
embedding weight              lambda = 0.01          100 * 0.01 (``embed_weight: 1.0``)
network norm                  instance norm          batch norm (their ``get_network`` forces it)
============================  =====================  =============================================
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ddlight.methods.matching.base import RandomNetworkMatching
from ddlight.ops.attention import class_means, mean_matching_loss, spatial_attention
from ddlight.ops.augment import DEFAULT_STRATEGY
from ddlight.ops.chunked import chunked_sums, class_sums


class DataDAM(RandomNetworkMatching):
    """Learns ``ipc`` images per class by attention matching.

    Args:
        net: the network family to match in (``ConvNet`` by ``class_path``); re-drawn from a seeded
            default initialisation every ``steps_per_network`` steps and never trained.
        lr_img: SGD learning rate of the images (the study's eta_S); momentum ``momentum`` (0.5 as released).
        batch_real: real images per class per step (the data module serves them as episodes).
        steps_per_network: image updates per random network (the study's T; K = max_steps / T networks).
        power: attention exponent p. sam_weight, embed_weight: weights of the attention and embedding terms.
        dsa_strategy: DSA ops; ``auto`` (default) drops flip for digit datasets, an explicit strategy is
            applied as written (:func:`~ddlight.ops.augment.strategy_for`).
        syn_chunk: > 0 runs the synthetic side in chunks of this many images whose graphs are rebuilt one
            at a time in the backward pass (:mod:`ddlight.ops.chunked`): the same gradient for one extra
            forward, and one chunk's activations in memory instead of the whole set's (large images).
        **kwargs: :class:`~ddlight.methods.distiller.Distiller`'s (ipc, init, seed, grid_every, export_dir,
            checkpoint_every, check_every).
    """

    method_name = "datadam"
    display_name = "DataDAM"
    needs = "forward_blocks"

    def __init__(
        self,
        net: nn.Module,
        lr_img: float = 0.1,
        momentum: float = 0.5,
        batch_real: int = 256,
        steps_per_network: int = 1,
        power: float = 4.0,
        sam_weight: float = 1.0,
        embed_weight: float = 0.01,
        dsa_strategy: str = DEFAULT_STRATEGY,
        syn_chunk: int = 0,
        **kwargs: Any,
    ) -> None:
        if syn_chunk < 0:
            raise ValueError(f"syn_chunk must be >= 0 (0: the whole set at once), got {syn_chunk}")
        super().__init__(net, steps_per_network, **kwargs)

    # ------------------------------------------------------------------------------------------ loss
    def real_targets(self, real: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-class mean attention of every block but the last, and mean embedding, of a real batch.

        Attention is reduced inside the forward, block by block and micro-batch by micro-batch, so a
        256-per-class batch never holds its full-size activations.
        """
        k, p = self.num_classes, self.hparams.power
        acts, emb = self.net.forward_blocks(real, reduce=lambda a: spatial_attention(a, p))
        return [class_means(a, k) for a in acts[:-1]], class_means(emb.float(), k)

    def losses(self, real: torch.Tensor, real_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        params = self.siamese_params()
        with torch.inference_mode():
            real_atts, real_emb = self.real_targets(self.dsa.apply(real, params, real_labels))
        # Leave inference mode with ordinary tensors: autograd may need them in the syn-side graph.
        real_atts = [a.clone() for a in real_atts]
        real_emb = real_emb.clone()
        sam, mmd = self.syn_terms(params, real_atts, real_emb)
        loss = self.hparams.sam_weight * sam + self.hparams.embed_weight * mmd
        return {"loss": loss, "attention": sam, "embedding": mmd}

    def syn_terms(
        self, params, real_atts: list[torch.Tensor], real_emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention and embedding terms of the synthetic side, whole or chunk by chunk."""
        k, p, chunk = self.num_classes, self.hparams.power, self.hparams.syn_chunk
        if chunk <= 0 or chunk >= self.images.shape[0]:
            syn = self.dsa.apply(self.images, params, self.labels)
            atts, emb = self.net.forward_blocks(syn, reduce=lambda a: spatial_attention(a, p))
            sam = sum(mean_matching_loss(t, a, k) for t, a in zip(real_atts, atts[:-1], strict=True))
            return sam, mean_matching_loss(real_emb, emb.float(), k)

        def sums(x: torch.Tensor, idx: torch.Tensor) -> list[torch.Tensor]:
            labels = self.labels[idx]
            atts, emb = self.net.forward_blocks(
                self.dsa.apply(x, params, labels), reduce=lambda a: spatial_attention(a, p)
            )
            return [class_sums(a, labels, k) for a in atts[:-1]] + [class_sums(emb.float(), labels, k)]

        *att_sums, emb_sum = chunked_sums(sums, self.images, chunk)
        ipc = self.hparams.ipc
        sam = sum((t - s / ipc).pow(2).sum() for t, s in zip(real_atts, att_sums, strict=True))
        return sam, (real_emb - emb_sum / ipc).pow(2).sum()
