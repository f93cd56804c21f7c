"""Did an evaluation run learn? The first and last epoch's training loss of every run, kept on the device."""

from __future__ import annotations

import torch

MIN_LOSS_DROP = 0.1  # a run "learns" if its epoch loss falls at least this share of the way to its floor


class LossTrend:
    """Per-run mean training loss of the first and the last epoch, summed on the device (no host sync
    per step) and read once at the end."""

    def __init__(self) -> None:
        self.first: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._epoch = -1
        self.epochs = 0

    def add(self, epoch: int, losses: torch.Tensor) -> None:
        if epoch != self._epoch:
            self._close()
            self._epoch, self.epochs = epoch, self.epochs + 1
        v = losses.detach().float()
        self._sum = v if self._sum is None else self._sum + v
        self._count += 1

    def _close(self) -> None:
        if self._sum is None:
            return
        mean = self._sum / self._count
        self.first = mean if self.first is None else self.first
        self.last, self._sum, self._count = mean, None, 0

    def summary(self, floor: float = 0.0) -> tuple[list[float] | None, list[float] | None, list[int]]:
        """(first, last, runs that did not learn); ``(None, None, [])`` with fewer than two epochs."""
        self._close()
        if self.first is None or self.last is None or self.epochs < 2:
            return None, None, []
        first, last = self.first.cpu(), self.last.cpu()
        fell = (first - last) / (first - floor).clamp(min=1e-8)
        return first.tolist(), last.tolist(), [i for i, f in enumerate(fell.tolist()) if f < MIN_LOSS_DROP]
