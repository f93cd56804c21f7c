"""Lossless-IPC search (the study's section III): the smallest images-per-class that meets a target.

Each probe costs a whole distillation plus an evaluation, so the search is built to spend as few probes
as possible and never the same one twice: it doubles the IPC until the target is met (accuracy grows with
IPC, so the first success bounds the answer from above and the last failure from below), then bisects
the integers in between. For an answer ``a > start`` that takes ``ceil(log2(a / start)) + 1`` doubling
probes plus ``log2`` of the final bracket's width in bisection probes; a probe already made (here or in
an earlier run, through ``evaluate``'s own cache) is not repeated.

The function is pure: ``evaluate(ipc) -> accuracy`` is all it knows about distillation, which is what
lets tests check the probe count exactly with stubbed accuracy curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """What "lossless" means: an absolute accuracy, or at most ``within`` below the full-data accuracy.

    Accuracies are fractions (0.99 is 99 %); ``within=0.01`` is "within 1 percentage point".
    """

    accuracy: float | None = None
    within: float | None = None
    full_accuracy: float | None = None

    def __post_init__(self) -> None:
        if (self.accuracy is None) == (self.within is None):
            raise ValueError("a search target needs exactly one of `accuracy` and `within`")
        if self.within is not None and self.full_accuracy is None:
            raise ValueError("a `within` target needs the full-data accuracy it is relative to")

    @property
    def threshold(self) -> float:
        if self.accuracy is not None:
            return float(self.accuracy)
        return float(self.full_accuracy) - float(self.within)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.accuracy is not None:
            return f"test accuracy >= {100 * self.accuracy:.2f} %"
        return (
            f"test accuracy >= full-data accuracy {100 * self.full_accuracy:.2f} % - "  # type: ignore[operator]
            f"{100 * self.within:.2f} points = {100 * self.threshold:.2f} %"
        )


@dataclass
class SearchResult:
    """The answer (``None`` when even ``max_ipc`` misses the target) and every probe, in order."""

    ipc: int | None
    threshold: float
    probes: list[tuple[int, float]] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return len(self.probes)

    def accuracy_at(self, ipc: int) -> float:
        return dict(self.probes)[ipc]


def search_lossless_ipc(
    evaluate: Callable[[int], float],
    threshold: float,
    start: int = 1,
    max_ipc: int | None = None,
) -> SearchResult:
    """Smallest integer IPC in ``[start, max_ipc]`` with ``evaluate(ipc) >= threshold``.

    Assumes accuracy is non-decreasing in IPC (more images per class never hurt on average); with a
    noisy ``evaluate`` the answer is the smallest IPC the probes *saw* meet the target.
    """
    if start < 1:
        raise ValueError(f"start must be >= 1, got {start}")
    if max_ipc is not None and max_ipc < start:
        raise ValueError(f"max_ipc ({max_ipc}) must be >= start ({start})")
    seen: dict[int, float] = {}
    result = SearchResult(ipc=None, threshold=threshold)

    def meets(ipc: int) -> bool:
        if ipc not in seen:
            seen[ipc] = float(evaluate(ipc))
            result.probes.append((ipc, seen[ipc]))
        return seen[ipc] >= threshold

    # Doubling: find a bracket (lo fails, hi meets) or run out of room.
    lo, hi = None, start
    while not meets(hi):
        if max_ipc is not None and hi >= max_ipc:
            return result
        lo, hi = hi, hi * 2 if max_ipc is None else min(hi * 2, max_ipc)
    if lo is None:  # the very first probe met the target: nothing smaller is searched
        result.ipc = hi
        return result
    # Bisection on the integers strictly between lo and hi.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    result.ipc = hi
    return result
