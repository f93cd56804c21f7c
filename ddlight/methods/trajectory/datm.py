"""DATM (Guo et al., ICLR 2024, "Towards Lossless Dataset Distillation via Difficulty-Aligned Trajectory
Matching"): MTT plus learnable soft labels initialised from correctly classified real images
(``pix_init: samples_predicted_correctly``), the growing window of start epochs (``Sequential_Generation``)
and the loss threshold. Every parameter stays in the loss (no FIEM, ``depth_ratio`` 0). Defaults are
NUS-HPC-AI-Lab/DATM ``utils/cfg.py``'s; its per-IPC ``configs/CIFAR-10/ConvIN/*.yaml`` are in the MNIST
configs' comments.
"""

from __future__ import annotations

from torch import nn

from ddlight.methods.trajectory.core import TrajectoryMatching


class DATM(TrajectoryMatching):
    """Difficulty-aligned trajectory matching with soft labels. The defaults that differ from PAD's are set
    here; every other argument (``lr_label`` 2, ``momentum_label`` 0.9, ``loss_threshold`` 1, ``lr_img``
    1000, ``lr_lr`` 1e-5, ...) is :class:`~ddlight.methods.trajectory.core.TrajectoryMatching`'s and DATM's.

    Args:
        net: the student architecture; must be the experts'.
        syn_steps: N, student steps on the synthetic set per iteration.
        current_max_start_epoch, max_start_epoch, max_start_epoch_growth_steps: the start-epoch bound
            grows from ``current_max_start_epoch`` to ``max_start_epoch`` over this many iterations
            (``expansion_end_epoch``); None or 0 is ``Sequential_Generation: False``.
    """

    method_name = "datm"
    display_name = "DATM"

    def __init__(
        self,
        net: nn.Module,
        syn_steps: int = 80,
        current_max_start_epoch: int | None = 20,
        max_start_epoch: int = 25,
        max_start_epoch_growth_steps: int = 3000,
        **kwargs,
    ) -> None:
        super().__init__(
            net,
            syn_steps=syn_steps,
            current_max_start_epoch=current_max_start_epoch,
            max_start_epoch=max_start_epoch,
            max_start_epoch_growth_steps=max_start_epoch_growth_steps,
            soft_labels=True,
            depth_ratio=0.0,
            loss_ratio=0.0,
            **kwargs,
        )
