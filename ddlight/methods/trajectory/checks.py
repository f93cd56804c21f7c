"""The trajectory methods' argument checks, run at construction rather than after the buffer has been
read (a wrong window or step count would otherwise fail minutes into a run)."""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from ddlight.methods.trajectory.window import check_window
from ddlight.models.checks import refuse_compiled_graphs


def check_args(
    init: str,
    syn_steps: int,
    expert_epochs: int,
    batch_syn: int | None,
    label_experts: int | None,
    checkpoint_segments: int | None,
    memory_budget_mb: float | None = None,
) -> None:
    """Argument checks, at construction rather than after the buffer has been read."""
    if init not in ("real", "noise"):
        raise ValueError(f"trajectory matching supports init 'real' or 'noise', got {init!r}")
    if syn_steps < 0 or expert_epochs < 1:
        raise ValueError(f"need syn_steps >= 0 and expert_epochs >= 1, got {syn_steps}, {expert_epochs}")
    if batch_syn is not None and batch_syn < 1:
        raise ValueError(f"batch_syn must be >= 1 or None, got {batch_syn}")
    if checkpoint_segments is not None and checkpoint_segments < 0:
        raise ValueError(f"checkpoint_segments must be >= 0, got {checkpoint_segments}")
    if label_experts is not None and label_experts < 1:
        raise ValueError(f"label_experts must be >= 1 or None, got {label_experts}")
    check_budget(checkpoint_segments, memory_budget_mb)


def check_budget(checkpoint_segments: int | None, memory_budget_mb: float | None) -> None:
    """Segments come as a count (``checkpoint_segments``, which then wins) or from a memory budget."""
    if memory_budget_mb is not None and memory_budget_mb <= 0:
        raise ValueError(f"memory_budget_mb must be > 0 (MB of unrolled graph), got {memory_budget_mb}")


def check_settings(net: nn.Module, s: SimpleNamespace, where: str) -> None:
    """Every argument check of :class:`~ddlight.methods.trajectory.core.TrajectoryMatching`'s ``settings``
    (every argument it runs with, MTT's and DATM's fixed ones included); ``where`` names the method."""
    refuse_compiled_graphs(net, where)  # the unrolled student SGD is differentiated again
    check_args(
        s.init, s.syn_steps, s.expert_epochs, s.batch_syn, s.label_experts, s.checkpoint_segments,
        s.memory_budget_mb,
    )  # fmt: skip
    check_window(s.min_start_epoch, s.current_max_start_epoch, s.max_start_epoch)
