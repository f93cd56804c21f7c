"""The trajectory methods' argument checks, run at construction rather than after the buffer has been
read (a wrong window or step count would otherwise fail minutes into a run)."""

from __future__ import annotations


def check_args(
    init: str,
    syn_steps: int,
    expert_epochs: int,
    batch_syn: int | None,
    checkpoint_segments: int,
    label_experts: int | None,
) -> None:
    """Argument checks, at construction rather than after the buffer has been read."""
    if init not in ("real", "noise"):
        raise ValueError(f"trajectory matching supports init 'real' or 'noise', got {init!r}")
    if syn_steps < 0 or expert_epochs < 1:
        raise ValueError(f"need syn_steps >= 0 and expert_epochs >= 1, got {syn_steps}, {expert_epochs}")
    if batch_syn is not None and batch_syn < 1:
        raise ValueError(f"batch_syn must be >= 1 or None, got {batch_syn}")
    if checkpoint_segments < 0:
        raise ValueError(f"checkpoint_segments must be >= 0, got {checkpoint_segments}")
    if label_experts is not None and label_experts < 1:
        raise ValueError(f"label_experts must be >= 1 or None, got {label_experts}")


def check_window(min_start_epoch: int, current_max_start_epoch: int | None, max_start_epoch: int) -> None:
    """Start epochs are drawn from ``[min, bound)`` with the bound growing from current to max."""
    current = max_start_epoch if current_max_start_epoch is None else current_max_start_epoch
    if not 0 <= min_start_epoch < current <= max_start_epoch:
        raise ValueError(
            "need 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch (start epochs are "
            f"drawn from [min, bound)); got {min_start_epoch}, {current_max_start_epoch}, "
            f"{max_start_epoch}"
        )
