"""What an evaluation writes (``results.json``) and the report reads: one typed record, so the writer and
the reader name the same fields. A JSON object on disk, a ``dict`` in memory (the keys of ``artifacts.RES_*``
among them); the optional parts appear when their protocol ran."""

import json
from pathlib import Path
from typing import Any, TypedDict

from typing_extensions import NotRequired

from ddlight.artifacts import (
    RES_ARCHITECTURE,
    RES_EPOCHS,
    RES_MEAN,
    RES_NUM_RUNS,
    RES_SCHEDULE,
    RES_SECONDS_PER_RUN,
    RES_STD,
)


class EvalResult(TypedDict):
    architecture: str
    num_runs: int
    epochs: int
    schedule: str
    labels: str  # "soft" or "hard": what the runs trained on
    lr: float
    lr_source: str
    accuracy_at: str
    dsa: bool
    dsa_strategy: str
    accuracies: list[float]
    mean: float
    std: float
    train_seconds_total: float
    train_seconds_per_run: float
    # the learning check (absent when no epoch ran)
    train_loss_first_epoch: NotRequired[list[float]]
    train_loss_last_epoch: NotRequired[list[float]]
    runs_not_learning: NotRequired[list[int]]
    # lr="search": the validation split and each grid rate's accuracy on it
    lr_search: NotRequired[dict[str, Any]]
    set_partial: NotRequired[str]
    # the scored protocol (baselines): DD-Ranking's scores, the runs they come from, how they were drawn
    scores: NotRequired[dict[str, float]]
    baselines: NotRequired[dict[str, Any]]
    protocol: NotRequired[dict[str, Any]]
    formulas: NotRequired[dict[str, str]]
    step: NotRequired[int]  # the mid-distillation callback: the distiller's step


# what a result always holds and a report always reads (artifacts.RES_*)
CORE = (RES_ARCHITECTURE, RES_NUM_RUNS, RES_EPOCHS, RES_SCHEDULE, RES_MEAN, RES_STD, RES_SECONDS_PER_RUN)


def load_result(path: str | Path) -> EvalResult:
    """A results file as written by the evaluator; one line naming the file when it lacks a field every
    reader needs (older files may lack the others)."""
    data = json.loads(Path(path).read_text())
    missing = [k for k in CORE if k not in data]
    if missing:
        raise ValueError(f"{path}: not an evaluation result (missing {', '.join(sorted(missing))})")
    return data
