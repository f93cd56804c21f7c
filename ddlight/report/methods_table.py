"""The "Methods" section (:mod:`ddlight.report.compare`) as a Markdown table: per method and IPC the
ConvNet accuracy on hard labels, on the method's learned labels where it learns them, the distillation's
seconds per iteration and peak memory, and the method's published number beside them."""

from __future__ import annotations

from ddlight.ops.scores import SCORES
from ddlight.report.compare import HARD
from ddlight.report.study import STUDY, DatasetResults
from ddlight.report.tables import DASH, Ledger, eval_cell, eval_protocol, md_table, method_title, study_pct

SCORE_COLUMNS = ("random", "full", *SCORES)
SCORE_HEADER = ["random subset (%)", "full data (%)", *SCORES]
SCORES_NOTE = (
    " Scores (DD-Ranking's, on fractions): the set against a random real subset of the same IPC and the full "
    "training set under the same recipe; HLR = full - set (hard labels), IOR = set - random, LRS = "
    "(e^a - e^-1)/(e - e^-1) with a = w IOR - (1 - w) HLR, ARS likewise from the gaps to random with and "
    "without augmentation; each accuracy is the final epoch's, and no rate is chosen on test data "
    "(ddlight/evaluation/scoring.py)."
)


def score_cells(led: Ledger, scores: dict) -> list[str]:
    if not scores:
        return [DASH] * len(SCORE_COLUMNS)
    return [led.pct(scores[k]) if k in ("random", "full") else led.score(scores[k]) for k in SCORE_COLUMNS]


def methods_table(led: Ledger, r: DatasetResults) -> str:
    led.section = f"Methods ({r.title})"
    cmp = r.comparison
    assert cmp is not None
    net, rows, protocols, keys = r.net, [], set(), []
    for row in cmp.rows:
        s = r.sets[row.set]
        hard = r.evals[(row.set, net, HARD)]
        learned = r.evals.get((row.set, net, STUDY)) if row.method in cmp.learned_labels else None
        # a set's own labels are what IOR compares (DD-Ranking's "syn-any"); HLR is hard-label either way
        scores = learned.scores if learned is not None and learned.scores else hard.scores
        protocols.add(eval_protocol(hard))
        keys.append(-float(scores[cmp.rank_by]) if cmp.rank_by and scores else float("inf"))
        rows.append(
            [
                method_title(row.method),
                str(row.ipc),
                eval_cell(led, hard, with_time=False),
                eval_cell(led, learned, with_time=False),
                led.count(s.steps) if s.steps is not None else DASH,
                led.per_step(s.distill_seconds, s.steps) if s.steps is not None else DASH,
                led.megabytes(s.peak_mb) if s.peak_mb is not None else DASH,
                study_pct(cmp.published.get(row.method, {}).get(row.ipc)),
                *score_cells(led, scores),
            ]
        )
    scored = any(row[-1] != DASH for row in rows)
    if cmp.rank_by:  # stable: unscored rows keep config order after the scored ones
        rows = [row for _, row in sorted(zip(keys, rows, strict=True), key=lambda kr: kr[0])]
    if not scored:
        rows = [row[: -len(SCORE_COLUMNS)] for row in rows]
    header = [
        "method",
        "IPC",
        f"{net} acc., hard labels (%)",
        "acc., learned labels (%)",
        "iterations",
        "distillation s / iteration",
        "peak memory (MB)",
        "published, MNIST ConvNet (%)",
        *(SCORE_HEADER if scored else []),
    ]
    scores_note = SCORES_NOTE + (f" Rows ranked by {cmp.rank_by}, best first." if cmp.rank_by else "")
    scores_note = scores_note if scored else ""
    return (
        md_table(header, rows)
        + "\n\nEvery set distilled from real images here and evaluated under one protocol: "
        + "; ".join(sorted(protocols))
        + ", on the set's hard labels (a soft-label set's argmax), and with its learned soft labels for the "
        "methods that learn them. Seconds per iteration = distillation time / iterations. Peak memory: the "
        "process's resident high-water mark on CPU (the allocator's peak on a GPU) from the start of the "
        "fit to its last logged step, which includes what the process already held: with stages run in "
        "the report's process that is the earlier stages' residue too; `--subprocess` gives each stage "
        "its own process. Published: "
        "each method's paper at its own budget (DC, DSA, DM: their papers; MTT's paper has no MNIST row, "
        "and its 97.3 at IPC 10 is the figure ddlight's baselines issue quotes, not checked against a "
        "source here), not measured here." + scores_note
    )
