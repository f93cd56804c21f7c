"""The report's "Methods" section: every method of a dataset's ``compare`` block at every IPC, distilled
from real images and evaluated under one protocol.

The protocol trains on hard labels for every set (a soft-label set's argmax, ``data.init_args.labels:
hard``), so the images are compared on equal terms; the methods that learn labels (``learned_labels``)
are also evaluated with them. Each row carries the distillation's seconds per iteration and the process's
peak memory, and the method's own published number beside it (``published``; never mixed with what was
measured).

Report config, per dataset::

    compare:
      ipcs: [1, 10, 50]
      methods: {dm: configs/mnist/dm.yaml, pad: {real: configs/mnist/pad.yaml}, ...}
      learned_labels: [datm, pad]
      published: {dm: {1: 0.897, 10: 0.975, 50: 0.986}, ...}
      rank_by: LRS   # optional: rows ordered by a score of the scored protocol (LRS or ARS), best first

and per budget: ``compare`` (flags of every method's stage), ``compare_<method>`` (flags of one),
``compare_eval`` (flags of the evaluations), ``compare_ipcs`` / ``compare_methods`` (a subset to run).
This module reads the block; ``DatasetPlan.compare_tasks`` (:mod:`ddlight.report.study`) turns it into
stages, so the plan imports this module and not the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddlight.ops.scores import RANKABLE

COMPARE = "compare"
HARD = "hard"  # the protocol's name: the set's labels hardened
FLAG_ROLES = {COMPARE, f"{COMPARE}_eval"}
OTHER_KEYS = {f"{COMPARE}_ipcs", f"{COMPARE}_methods"}


@dataclass(frozen=True)
class CompareRow:
    method: str
    ipc: int
    set: str  # the key of the set in DatasetResults.sets / evals


@dataclass
class Comparison:
    """What the section shows: rows in config order, which methods learn labels, published numbers."""

    rows: list[CompareRow] = field(default_factory=list)
    learned_labels: tuple[str, ...] = ()
    published: dict[str, dict[int, float]] = field(default_factory=dict)
    rank_by: str | None = None  # "LRS" / "ARS": the evaluations must run with baselines (scores)


def compare_key(method: str, ipc: int) -> str:
    """The set's key: its stage's name without the dataset (``DatasetPlan.distill`` with the prefix)."""
    return f"{COMPARE}-{method}-real-ipc{ipc}"


def is_compare_role(key: str, spec: dict[str, Any]) -> bool:
    """A budget key this section reads: its flag roles, subsets, or ``compare_<method>``."""
    methods = (spec.get(COMPARE) or {}).get("methods", {})
    if key in FLAG_ROLES or key in OTHER_KEYS:
        return True
    return key.startswith(f"{COMPARE}_") and key[len(COMPARE) + 1 :] in methods


def comparison(spec: dict[str, Any], budget: dict[str, Any]) -> Comparison | None:
    block = spec.get(COMPARE)
    if not block:
        return None
    methods = list(budget.get(f"{COMPARE}_methods", list(block["methods"])))
    unknown = set(methods) - set(block["methods"])
    if unknown:
        raise ValueError(f"compare_methods names {sorted(unknown)}, not in compare.methods")
    ipcs = [int(i) for i in budget.get(f"{COMPARE}_ipcs", block["ipcs"])]
    rows = [CompareRow(m, i, compare_key(m, i)) for m in methods for i in ipcs]
    published = {m: {int(i): float(v) for i, v in p.items()} for m, p in block.get("published", {}).items()}
    rank_by = block.get("rank_by")
    if rank_by is not None and str(rank_by).upper() not in RANKABLE:
        raise ValueError(f"compare.rank_by must be one of {RANKABLE} (or absent), got {rank_by!r}")
    rank = str(rank_by).upper() if rank_by is not None else None
    return Comparison(rows, tuple(block.get("learned_labels", ())), published, rank)
