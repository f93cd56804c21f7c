"""What the distribution-matching methods (DataDAM, DM) share: a frozen random network re-drawn from a
seeded generator every ``steps_per_network`` steps, one Siamese DSA draw per class and step applied to the
real and the synthetic side alike, the Distiller's SGD on the images, and a step that is one image update.

A method only says what it matches: :meth:`RandomNetworkMatching.losses` returns the loss terms of one
step from a class-balanced real episode (``batch_real`` images per class, class-major, as the data module
serves them when ``data.init_args.episode_per_class`` = ``batch_real``, which the CLI links).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from ddlight.data.base import check_episode
from ddlight.methods.distiller import Distiller
from ddlight.models.checks import check_num_classes
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DSA, DSAParams, strategy_for


class RandomNetworkMatching(Distiller):
    """Base of the matching distillers; subclasses implement :meth:`losses` and list only their own
    arguments (the shared ones are :class:`~ddlight.methods.distiller.Distiller`'s, passed on as
    ``**kwargs``).

    ``needs`` names the network method the subclass calls (``forward_blocks``, ``embed``): a network
    without it is refused at construction rather than at the first step.
    """

    needs = "embed"

    def __init__(self, net: nn.Module, steps_per_network: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not hasattr(net, self.needs):
            raise TypeError(
                f"{type(self).__name__} needs a network with {self.needs}() (e.g. ddlight.models.ConvNet), "
                f"got {type(net).__name__}"
            )
        if steps_per_network < 1:
            raise ValueError(f"steps_per_network must be >= 1, got {steps_per_network}")
        self.net = net.requires_grad_(False)
        self._net_block = -1

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_num_classes(self.net, self.trainer.datamodule, type(self).__name__)
        self.dsa = DSA(strategy_for(self.hparams.dsa_strategy, self.trainer.datamodule.flip_invariant))

    # ---------------------------------------------------------------------------------------- pieces
    def _fresh_network(self) -> None:
        """Re-draw the network at the start of each block of ``steps_per_network`` steps; the draw depends
        only on (seed, block), so a resumed run sees the same networks."""
        block = int(self.global_step) // self.hparams.steps_per_network
        if block != self._net_block:
            reinitialize(self.net, mix_seed(self.hparams.seed, 1, block))
            self._net_block = block
        self.net.train()  # batch-norm variants normalise with each batch's own statistics, as released

    def siamese_params(self) -> DSAParams:
        """One DSA transform per class for this step (and rank): ``self.dsa.apply(x, params, labels)`` on
        both sides gives a class's real and synthetic images the same augmentation."""
        gen = torch.Generator().manual_seed(
            mix_seed(self.hparams.seed, 2, int(self.global_step), self.global_rank)
        )
        return self.dsa.sample(self.num_classes, generator=gen, device=self.device)

    @abstractmethod
    def losses(self, real: torch.Tensor, real_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": total, <term>: ...}`` of one step; ``loss`` is what the images descend."""

    # ------------------------------------------------------------------------------------------ step
    def distill_losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        real, real_labels = batch
        check_episode(real, self.num_classes, self.hparams.batch_real, type(self).__name__)
        self._fresh_network()
        return self.losses(real, real_labels)
