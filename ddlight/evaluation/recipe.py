"""The evaluation recipe: how each network is trained on a set (a typed value shared by the Lightning
evaluator, the plain loop, the scoring runs and the mid-distillation callback), where its base learning rate
comes from (a number, the set's learned ``syn_lr``, or a search on the validation split) and how the rate
decays over the epochs."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ddlight.ops.augment import DEFAULT_STRATEGY

Schedule = Literal["step", "reference", "cosine", "none"]
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
LR_SOURCES = {"learned": "learned syn_lr", "search": "searched on the validation split"}
LEARNED = "learned"
SEARCH = "search"


def resolve_lr(lr: float | str, extra: dict[str, Any] | None, source: str) -> float:
    """The base rate to train at: ``lr`` itself, or the set's learned ``syn_lr`` when ``lr="learned"``."""
    if lr != LEARNED:
        if lr == SEARCH:
            raise ValueError(
                f"lr={SEARCH!r} needs a validation split of the real training set: it is available to "
                "SyntheticEvaluator run by `python -m ddlight fit` on a SyntheticDataModule, not here"
            )
        if isinstance(lr, str):
            raise ValueError(f"lr must be a number, {LEARNED!r} or {SEARCH!r}, got {lr!r}")
        return float(lr)
    value = (extra or {}).get("syn_lr")
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"lr={LEARNED!r} needs a positive learned student rate in the synthetic set's "
            f"extra['syn_lr'] ({source}), got {value!r}; only trajectory-matching distillers (PAD) "
            "store one, so pass a number for other sets"
        )
    return float(value)


def reference_decay_epoch(epochs: int) -> int:
    """The first epoch (0-based) at the decayed rate in the authors' loop: ``epochs`` = their ``Epoch + 1``
    trained, lr x0.1 after their epoch ``Epoch // 2 + 1`` (``lr_schedule = [Epoch//2+1]``)."""
    return (epochs - 1) // 2 + 2


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base lr at ``epoch`` (0-based). ``step`` decays from epoch ``epochs // 2`` on, but
    never before the first epoch is done: a 1-epoch run (a short full-data baseline) trains at the rate."""
    if schedule == "step":
        return 0.1 if epoch >= max(1, epochs // 2) else 1.0
    if schedule == "reference":
        return 0.1 if epoch >= reference_decay_epoch(epochs) else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))
    return 1.0


@dataclass(frozen=True)
class Recipe:
    """The training every evaluation run follows. ``lr`` is a number, ``"learned"`` (the set's ``syn_lr``)
    or ``"search"`` (chosen on a validation split by :func:`ddlight.evaluation.scoring.search_lr`)."""

    num_runs: int = 5
    epochs: int = 300
    lr: float | Literal["learned", "search"] = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "step"
    dsa: bool = True
    dsa_strategy: str = DEFAULT_STRATEGY
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.num_runs < 1:
            raise ValueError(f"num_runs must be >= 1, got {self.num_runs}")
        if self.lr not in (LEARNED, SEARCH):
            resolve_lr(self.lr, None, "")  # any other string is refused here, before training

    def but(self, **changes: Any) -> Recipe:
        """The same recipe with ``changes`` (a baseline's rate, one run for a search, no augmentation)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
