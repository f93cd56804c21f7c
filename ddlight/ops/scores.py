"""DD-Ranking's scores of a synthetic set (NUS-HPC-AI-Lab/DD-Ranking, README "Label-Robust Score" and
"Augmentation-Robust Score"; ``ddranking/metrics/*.py``), on accuracies as fractions.

DD-Ranking's code feeds percentages into ``exp``: alpha = 0.5 * 5.3 - 0.5 * 2.1 = 1.6 gives a "score in
[0, 1]" of (e^1.6 - e^-1) / (e - e^-1) = 1.95. On fractions alpha and beta lie in [-1, 1], so both
scores do lie in [0, 1], the normalisation the formula was written for; 0.269 (alpha = 0) means
"exactly as good as the baselines".
"""

from __future__ import annotations

import math

# Every score ddlight reports, in the order logs and tables show them: the one list a new score joins (its
# formula below, its computation in ddlight.evaluation.scoring.score); results files, the log line,
# TensorBoard and the report's columns follow it.
SCORES: tuple[str, ...] = ("HLR", "IOR", "LRS", "ARS")
# The scores a report may rank sets by (higher is better); HLR and IOR are gaps that feed them.
RANKABLE: tuple[str, ...] = ("LRS", "ARS")

FORMULAS = {
    "HLR": "acc(full real data, hard labels) - acc(set, hard labels)  [hard-label recovery; lower is better]",
    "IOR": "acc(set, its own labels) - acc(random real subset of the same IPC, labelled the same way)",
    "LRS": "(e^alpha - e^-1) / (e - e^-1), alpha = w * IOR - (1 - w) * HLR  [label-robust score]",
    "ARS": (
        "(e^beta - e^-1) / (e - e^-1), beta = g * (acc(set, aug) - acc(random, aug)) "
        "+ (1 - g) * (acc(set, no aug) - acc(random, no aug))  [augmentation-robust score]"
    ),
    "source": "DD-Ranking (NUS-HPC-AI-Lab), on fractions rather than percentages",
}


def unit_exp(x: float) -> float:
    """(e^x - e^-1) / (e - e^-1): maps x in [-1, 1] onto [0, 1] monotonically (x = 0 -> 0.269)."""
    return (math.exp(x) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def _fraction(name: str, acc: float) -> float:
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"{name} must be an accuracy as a fraction in [0, 1], got {acc!r}")
    return float(acc)


def _gap(named: dict[str, float]) -> float:
    """First accuracy minus second, each checked to be a fraction."""
    (a_name, a), (b_name, b) = named.items()
    return _fraction(a_name, a) - _fraction(b_name, b)


def _combined(weight: float, name: str, first: float, second: float) -> tuple[float, float]:
    """``weight * first + (1 - weight) * second`` (weight checked) and its :func:`unit_exp` score."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the {name} must be in [0, 1], got {weight!r}")
    value = weight * first + (1.0 - weight) * second
    return value, unit_exp(value)


def label_robust(
    full_hard: float, set_hard: float, set_any: float, random_any: float, w: float = 0.5
) -> dict:
    """HLR, IOR, alpha and LRS from four accuracies (fractions)."""
    hlr = _gap({"acc(full)": full_hard, "acc(set, hard)": set_hard})
    ior = _gap({"acc(set)": set_any, "acc(random)": random_any})
    alpha, lrs = _combined(w, "LRS weight w", ior, -hlr)
    return {"HLR": hlr, "IOR": ior, "alpha": alpha, "LRS": lrs, "w": float(w)}


def augmentation_robust(
    set_aug: float, random_aug: float, set_plain: float, random_plain: float, gamma: float = 0.5
) -> dict:
    """ARS from the set's and the random subset's accuracies with and without augmentation."""
    with_aug = _gap({"acc(set, aug)": set_aug, "acc(random, aug)": random_aug})
    without = _gap({"acc(set, no aug)": set_plain, "acc(random, no aug)": random_plain})
    beta, ars = _combined(gamma, "ARS weight gamma", with_aug, without)
    return {"gap_aug": with_aug, "gap_no_aug": without, "beta": beta, "ARS": ars, "gamma": float(gamma)}
