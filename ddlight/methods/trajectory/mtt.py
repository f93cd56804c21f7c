"""MTT (Cazenavette et al., CVPR 2022, "Dataset Distillation by Matching Training Trajectories").

The trajectory-matching loss without what DATM and PAD add: hard class labels, real images drawn at random
(``pix_init: real``), start epochs from the fixed window ``[0, max_start_epoch)``, every parameter in the
loss, no loss threshold. Defaults are those of GeorgeCazenavette/mtt-distillation ``distill.py``. The
experts are stage 1's (:class:`~ddlight.methods.trajectory.experts.Experts`); MTT's own ``buffer.py``
trains them on all the data, which is ``scheduler: false`` there (PAD's curriculum off).
"""

from __future__ import annotations

from torch import nn

from ddlight.methods.trajectory.core import TrajectoryMatching


class MTT(TrajectoryMatching):
    """Matching training trajectories with hard labels. The defaults here are ``distill.py``'s; every other
    argument is :class:`~ddlight.methods.trajectory.core.TrajectoryMatching`'s (the images and ``syn_lr``
    at momentum 0.5, ``lr_img`` 1000, ``lr_lr`` 1e-5, ``lr_teacher`` 0.01, all synthetic images per student
    step, DSA) except those MTT does not have, which are fixed below and not configurable.

    Args:
        net: the student architecture; must be the experts'.
        syn_steps: N, student steps on the synthetic set per iteration.
        expert_epochs: M, expert epochs the N steps must cover.
        max_start_epoch: start epochs are drawn from ``[0, max_start_epoch)``.
    """

    method_name = "mtt"
    display_name = "MTT"
    init_correct = False  # ``pix_init: real`` draws random images of each class

    def __init__(
        self, net: nn.Module, syn_steps: int = 20, expert_epochs: int = 3, max_start_epoch: int = 25, **kwargs
    ) -> None:
        super().__init__(
            net,
            syn_steps=syn_steps,
            expert_epochs=expert_epochs,
            max_start_epoch=max_start_epoch,
            min_start_epoch=0,
            current_max_start_epoch=None,
            max_start_epoch_growth_steps=0,
            soft_labels=False,
            depth_ratio=0.0,
            loss_ratio=0.0,
            loss_threshold=None,
            # labels are neither learned nor chosen by the experts
            lr_label=0.0,
            momentum_label=0.0,
            label_expert_epoch=-1,
            label_experts=None,
            init_pool=0,
            **kwargs,
        )
