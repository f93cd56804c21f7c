"""The Methods table with the scored protocol: score columns read from each evaluation's results file,
rows ranked by LRS when the config asks, and no score columns when nothing was scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddlight.report.compare import HARD, CompareRow, Comparison, comparison
from ddlight.report.methods_table import methods_table
from ddlight.report.outputs import DistillOut, Measured, read_eval
from ddlight.report.study import STUDY, DatasetResults
from ddlight.report.tables import Ledger


def write_eval(d: Path, mean: float, lrs: float | None) -> Path:
    d.mkdir(parents=True)
    res = {"mean": mean, "std": 0.01, "train_seconds_per_run": 2.0, "num_runs": 2, "epochs": 3}
    res |= {"schedule": "step", "architecture": "ConvNet"}
    if lrs is not None:
        res["scores"] = {"HLR": 0.1, "IOR": 0.05, "LRS": lrs, "ARS": 0.3}
        res["baselines"] = {"random": {"mean": mean - 0.05}, "full": {"mean": 0.99}}
    (d / "results.json").write_text(json.dumps(res))
    return d


def results(tmp_path: Path, lrs: dict[str, float | None], rank_by: str | None) -> DatasetResults:
    rows = [CompareRow(m, 1, f"compare-{m}-real-ipc1") for m in lrs]
    cmp = Comparison(rows, ("pad",), {}, rank_by)
    r = DatasetResults(key="mnist", title="MNIST", net="ConvNet-3", network="ConvNet-3", comparison=cmp)
    for i, (m, value) in enumerate(lrs.items()):
        row = rows[i]
        dist = Measured(10.0, "x", "k")
        r.sets[row.set] = DistillOut(Path("."), Path("."), 1, 10, 5, m, dist, [], "", None, None)
        r.evals[(row.set, "ConvNet-3", HARD)] = read_eval(
            write_eval(tmp_path / m / "hard", 0.8 + i / 100, value)
        )
        if m == "pad":  # a learned-label evaluation whose scores take precedence
            r.evals[(row.set, "ConvNet-3", STUDY)] = read_eval(write_eval(tmp_path / m / "soft", 0.9, 0.6))
    return r


def test_rows_ranked_by_lrs_with_each_score_traced_to_its_file(tmp_path):
    led = Ledger()
    text = methods_table(led, results(tmp_path, {"dc": 0.30, "dm": 0.45, "pad": 0.10}, "LRS"))
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    # PAD's learned-label evaluation scores 0.6 and ranks first, though its hard evaluation scores 0.10
    assert [line.split("|")[1].strip() for line in lines] == ["PAD", "DM", "DC"]
    assert "| 0.600 |" in lines[0] and "| 0.450 |" in lines[1] and "Rows ranked by LRS" in text
    lrs = [e for e in led.entries if e["text"] == "0.450"]
    assert lrs and lrs[0]["sources"][0]["file"].endswith("dm/hard/results.json")


def test_no_score_columns_without_scored_evaluations(tmp_path):
    text = methods_table(Ledger(), results(tmp_path, {"dc": None, "dm": None}, None))
    assert "LRS" not in text and "random subset" not in text


def test_rank_by_names_a_score():
    spec = {"compare": {"ipcs": [1], "methods": {"dm": "x.yaml"}, "rank_by": "accuracy"}}
    with pytest.raises(ValueError, match="rank_by must be one of"):
        comparison(spec, {})
    spec["compare"]["rank_by"] = "lrs"
    assert comparison(spec, {}).rank_by == "LRS"
