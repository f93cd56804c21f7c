"""PAD (Li et al., 2024, "Prioritize Alignment in Dataset Distillation"): DATM plus its two filters.

FIEX, the filter of information extraction, lives in stage 1 (the experts learn on an EL2N curriculum,
:mod:`~ddlight.methods.trajectory.fiex`); FIEM, the filter of information embedding, is ``depth_ratio``
here (:func:`~ddlight.methods.trajectory.fiem.fiem_mask`). Everything else is DATM's, so PAD is the whole
:class:`~ddlight.methods.trajectory.core.TrajectoryMatching` with PAD's defaults: every switch stays open.
"""

from __future__ import annotations

from ddlight.methods.trajectory.core import TrajectoryMatching


class PAD(TrajectoryMatching):
    """PAD: soft labels from correctly classified images, a growing start-epoch window, the loss
    threshold, and the shallow ``depth_ratio`` of the parameters left out of the loss. Args: as
    :class:`~ddlight.methods.trajectory.core.TrajectoryMatching`."""

    method_name = "pad"
    display_name = "PAD"
