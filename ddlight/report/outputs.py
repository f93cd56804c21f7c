"""Reading what stages wrote, and carrying every number together with the file it came from.

The report prints nothing it did not read from a stage's own output: TensorBoard scalars (baseline
accuracy, MACs, training time, distillation losses), the evaluator's ``results.json`` and the distiller's
``synthetic.pt``. Each number travels as a :class:`Measured` naming its source, and ``report.json`` lists
them all, so anyone (and the tests) can check a table cell against the file behind it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ddlight.artifacts import (
    BUFFER_MANIFEST,
    EXTRA_DISTILL_SECONDS,
    GRID_FILE,
    RES_ARCHITECTURE,
    RES_EPOCHS,
    RES_MEAN,
    RES_NUM_RUNS,
    RES_SCHEDULE,
    RES_SECONDS_PER_RUN,
    RES_STD,
    RESULTS_FILE,
    STAGE_BUFFER_DIR,
    SYNTHETIC_FILE,
    TAG_DISTILL_LOSS,
    TAG_MACS,
    TAG_PARAMS,
    TAG_PEAK_MB,
    TAG_TEST_ACC,
    TAG_TRAIN_SECONDS,
)
from ddlight.evaluation.result import load_result
from ddlight.ops.scores import SCORES


@dataclass(frozen=True)
class Measured:
    """A number and where it was read: ``file`` plus ``key`` (a TensorBoard tag or a JSON/metadata key)."""

    value: float
    file: str
    key: str

    def __float__(self) -> float:
        return float(self.value)


@lru_cache(maxsize=256)
def _scalars(tb_dir: str, mtime: float) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, float(e.value)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def scalars(tb_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of one TensorBoard run directory, as (step, value) lists in write order."""
    tb_dir = Path(tb_dir)
    events = sorted(tb_dir.glob("events.out.tfevents.*"))
    if not events:
        raise FileNotFoundError(f"no TensorBoard event file in {tb_dir}")
    return _scalars(str(tb_dir), max(e.stat().st_mtime for e in events))


def last_scalar(tb_dir: str | Path, tag: str) -> Measured:
    series = scalars(tb_dir).get(tag)
    if not series:
        raise KeyError(f"TensorBoard run {tb_dir} has no scalar {tag!r}")
    return Measured(series[-1][1], str(Path(tb_dir)), tag)


def json_value(path: str | Path, key: str) -> Measured:
    """``key`` may be dotted, with list indices: ``completed.0.test_acc``."""
    data: Any = json.loads(Path(path).read_text())
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return Measured(float(data), str(path), key)


def saved_config(tb_dir: str | Path) -> dict[str, Any]:
    """The resolved config LightningCLI saved beside the run's logs."""
    return yaml.safe_load((Path(tb_dir) / "config.yaml").read_text())


@dataclass(frozen=True)
class BaselineOut:
    accuracy: Measured
    params: Measured
    macs: Measured
    train_seconds: Measured
    epochs: int
    batches: Any  # trainer.limit_train_batches as run (None: every batch)


def read_baseline(stage_dir: str | Path) -> BaselineOut:
    fit, test = Path(stage_dir) / "tb" / "fit", Path(stage_dir) / "tb" / "test"
    cfg = saved_config(fit)["trainer"]
    return BaselineOut(
        accuracy=last_scalar(test, TAG_TEST_ACC),
        params=last_scalar(fit, TAG_PARAMS),
        macs=last_scalar(fit, TAG_MACS),
        train_seconds=last_scalar(fit, TAG_TRAIN_SECONDS),
        epochs=int(cfg["max_epochs"]),
        batches=cfg.get("limit_train_batches"),
    )


@dataclass(frozen=True)
class EvalOut:
    mean: Measured
    std: Measured
    train_seconds_per_run: Measured
    num_runs: int
    epochs: int
    schedule: str
    architecture: str
    # The scored protocol's figures (ddlight.evaluation.scoring), when the evaluation ran it: HLR, IOR, LRS,
    # ARS and the random-subset / full-data accuracies.
    scores: dict[str, Measured] = field(default_factory=dict)


SCORE_KEYS = {
    **{k: f"scores.{k}" for k in SCORES},
    "random": "baselines.random.mean",
    "full": "baselines.full.mean",
}


def read_eval(stage_dir: str | Path) -> EvalOut:
    path = Path(stage_dir) / RESULTS_FILE
    data = load_result(path)
    return EvalOut(
        mean=json_value(path, RES_MEAN),
        std=json_value(path, RES_STD),
        train_seconds_per_run=json_value(path, RES_SECONDS_PER_RUN),
        num_runs=int(data[RES_NUM_RUNS]),
        epochs=int(data[RES_EPOCHS]),
        schedule=str(data[RES_SCHEDULE]),
        architecture=str(data[RES_ARCHITECTURE]),
        scores={k: json_value(path, key) for k, key in SCORE_KEYS.items()} if "scores" in data else {},
    )


@dataclass(frozen=True)
class ExpertsOut:
    epochs: int
    test_acc: list[Measured]  # each expert's test accuracy after its last epoch


def read_experts(stage_dir: str | Path) -> ExpertsOut:
    path = Path(stage_dir) / STAGE_BUFFER_DIR / BUFFER_MANIFEST
    manifest = json.loads(path.read_text())
    accs = [json_value(path, f"completed.{i}.test_acc") for i in range(len(manifest["completed"]))]
    return ExpertsOut(int(manifest["epochs"]), accs)


@dataclass(frozen=True)
class DistillOut:
    path: Path
    grid: Path
    ipc: int
    num_classes: int
    iterations: int
    method: str
    distill_seconds: Measured
    loss: list[tuple[int, float]]
    loss_source: str
    steps: Measured | None = None  # the iteration count as a Measured (a denominator of per-step costs)
    peak_mb: Measured | None = None  # the process's peak memory at the last logged step


def read_distill(stage_dir: str | Path) -> DistillOut:
    from ddlight.data.synthetic import SyntheticSet

    stage_dir = Path(stage_dir)
    path = stage_dir / SYNTHETIC_FILE
    syn = SyntheticSet.load(path)
    tb = stage_dir / "tb" / "fit"
    return DistillOut(
        path=path,
        grid=stage_dir / GRID_FILE,
        ipc=syn.ipc,
        num_classes=syn.num_classes,
        iterations=syn.iteration,
        method=syn.method,
        distill_seconds=Measured(
            float(syn.extra[EXTRA_DISTILL_SECONDS]), str(path), f"extra.{EXTRA_DISTILL_SECONDS}"
        ),
        loss=scalars(tb).get(TAG_DISTILL_LOSS, []),
        loss_source=f"{tb}::{TAG_DISTILL_LOSS}",
        steps=Measured(float(syn.iteration), str(path), "iteration"),
        peak_mb=last_scalar(tb, TAG_PEAK_MB) if TAG_PEAK_MB in scalars(tb) else None,  # older runs: none
    )
