"""The window of start epochs: MTT draws from a fixed ``[min, max)``; DATM's ``Sequential_Generation``
grows the bound linearly from ``current_max_start_epoch`` to ``max_start_epoch`` (``Upper_Bound``): the rule
and the check of its three arguments."""

from __future__ import annotations


def start_bound(step: int, current: int | None, top: int, growth_steps: int) -> int:
    """Exclusive upper bound of the start epoch at iteration ``step``; ``current`` None or
    ``growth_steps`` <= 0 opens the whole window at once."""
    if current is None or growth_steps <= 0:
        return top
    return min(top, current + int((top - current) * step / growth_steps))


def check_window(min_start_epoch: int, current_max_start_epoch: int | None, max_start_epoch: int) -> None:
    """Start epochs are drawn from ``[min, bound)`` with the bound growing from current to max."""
    current = max_start_epoch if current_max_start_epoch is None else current_max_start_epoch
    if not 0 <= min_start_epoch < current <= max_start_epoch:
        raise ValueError(
            "need 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch (start epochs are "
            f"drawn from [min, bound)); got {min_start_epoch}, {current_max_start_epoch}, "
            f"{max_start_epoch}"
        )
