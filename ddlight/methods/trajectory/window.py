"""The window of start epochs: MTT draws from a fixed ``[min, max)``; DATM's ``Sequential_Generation``
grows the bound linearly from ``current_max_start_epoch`` to ``max_start_epoch`` (``Upper_Bound``)."""

from __future__ import annotations


def start_bound(step: int, current: int | None, top: int, growth_steps: int) -> int:
    """Exclusive upper bound of the start epoch at iteration ``step``; ``current`` None or
    ``growth_steps`` <= 0 opens the whole window at once."""
    if current is None or growth_steps <= 0:
        return top
    return min(top, current + int((top - current) * step / growth_steps))
