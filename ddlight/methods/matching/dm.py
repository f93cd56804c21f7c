"""DM: dataset condensation with distribution matching (Zhao & Bilen, WACV 2023).

Each step draws a fresh random network (never trained) and moves the synthetic images so that, per class,
the mean embedding of the synthetic images matches the mean embedding of a real batch, both augmented by
the same DSA draw per class. DataDAM (:mod:`ddlight.methods.matching.datadam`) is DM plus attention
terms; the two share :class:`~ddlight.methods.matching.base.RandomNetworkMatching` (network re-draws,
Siamese DSA, the step).

One Lightning step = one image update = one iteration of the released ``main_DM.py`` (``max_steps`` =
its ``Iteration``, 20,000 as released). The reference loops over classes with a per-class augmentation
seed; here all classes go through one forward each side, with one DSA transform per class
(:meth:`~ddlight.ops.augment.DSA.apply` groups by label), and the per-class means are one reshape.

Released settings, the defaults here: lr_img 1, momentum 0.5, batch_real 256, real init, DSA on
(``dsa_strategy='auto'``: the field's strategy minus flip on digits; ``configs/overlays/dsa_keep_flip.yaml``
restores the released flip), one network per step. The released loss is the sum over classes of the
squared L2 distance of the mean embeddings, as here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ddlight.methods.matching.base import RandomNetworkMatching
from ddlight.ops.attention import class_means, mean_matching_loss
from ddlight.ops.augment import DEFAULT_STRATEGY


class DM(RandomNetworkMatching):
    """Learns ``ipc`` images per class by mean-embedding matching in random networks.

    Args:
        net: the network family (``ConvNet`` by ``class_path``; needs ``embed``), re-drawn from a seeded
            default initialisation every ``steps_per_network`` steps (1, as released) and never trained.
        lr_img, momentum, batch_real, dsa_strategy: as for :class:`~ddlight.methods.matching.DataDAM`.
        **kwargs: :class:`~ddlight.methods.distiller.Distiller`'s (ipc, init, seed, grid_every, export_dir,
            checkpoint_every, check_every).
    """

    method_name = "dm"
    display_name = "DM"
    needs = "embed"

    def __init__(
        self,
        net: nn.Module,
        lr_img: float = 1.0,
        momentum: float = 0.5,
        batch_real: int = 256,
        steps_per_network: int = 1,
        dsa_strategy: str = DEFAULT_STRATEGY,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, steps_per_network, **kwargs)

    def losses(self, real: torch.Tensor, real_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``sum_c || mean embed(real_c) - mean embed(syn_c) ||^2``; the real side needs no graph."""
        k = self.num_classes
        params = self.siamese_params()
        with torch.inference_mode():
            real_emb = class_means(self.net.embed(self.dsa.apply(real, params, real_labels)).float(), k)
        real_emb = real_emb.clone()  # an ordinary tensor, usable in the syn-side graph
        emb = self.net.embed(self.dsa.apply(self.images, params, self.labels))
        loss = mean_matching_loss(real_emb, emb.float(), k)
        return {"loss": loss}
