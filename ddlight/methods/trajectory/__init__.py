"""Trajectory matching (MTT -> DATM -> PAD) in two stages: :class:`Experts` writes an expert buffer,
:class:`MTT`, :class:`DATM` or :class:`PAD` distils a synthetic set against it (one buffer serves all three;
``core`` holds their shared machinery).

Below the two Lightning modules, one file per concern: ``buffer`` (the on-disk contract between the
stages), ``el2n`` and ``fiex`` (stage 1's difficulty scores and curriculum), ``fiem``, ``labels``,
``unroll`` and ``threshold`` (stage 2's parameter mask, initial set, unrolled student and loss threshold).
"""

from ddlight.methods.trajectory.buffer import (
    EL2N_FILE,
    FORMAT_VERSION,
    MANIFEST,
    ExpertBuffer,
    Stream,
    expert_filename,
    flatten_parameters,
    tensor_digest,
)
from ddlight.methods.trajectory.core import TrajectoryMatching
from ddlight.methods.trajectory.datm import DATM
from ddlight.methods.trajectory.el2n import el2n, el2n_scores
from ddlight.methods.trajectory.experts import Experts
from ddlight.methods.trajectory.fiem import DEPTH_RATIOS, default_depth_ratio, fiem_mask, kept_per_parameter
from ddlight.methods.trajectory.fiex import FIEX, fiex_phase, fiex_schedule
from ddlight.methods.trajectory.mtt import MTT
from ddlight.methods.trajectory.pad import PAD
from ddlight.methods.trajectory.unroll import IterationPlan, minibatch_schedule, segment_bounds

__all__ = [
    "DATM",
    "DEPTH_RATIOS",
    "EL2N_FILE",
    "FIEX",
    "FORMAT_VERSION",
    "MANIFEST",
    "MTT",
    "PAD",
    "ExpertBuffer",
    "Experts",
    "IterationPlan",
    "Stream",
    "TrajectoryMatching",
    "default_depth_ratio",
    "el2n",
    "el2n_scores",
    "expert_filename",
    "fiem_mask",
    "fiex_phase",
    "fiex_schedule",
    "flatten_parameters",
    "kept_per_parameter",
    "minibatch_schedule",
    "segment_bounds",
    "tensor_digest",
]
