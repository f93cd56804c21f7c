"""Evaluation of a synthetic set: one training loop (:class:`Runs`) under a typed :class:`Recipe`, the
Lightning stage over it (:class:`SyntheticEvaluator`), the scored protocol (:mod:`.scoring`) and the result
they write (:class:`EvalResult`)."""

from ddlight.evaluation.evaluator import SyntheticEvaluator
from ddlight.evaluation.recipe import LEARNED, SEARCH, Recipe, Schedule
from ddlight.evaluation.result import EvalResult, load_result
from ddlight.evaluation.runs import Runs
from ddlight.evaluation.scoring import Baselines

__all__ = [
    "LEARNED",
    "SEARCH",
    "Baselines",
    "EvalResult",
    "Recipe",
    "Runs",
    "Schedule",
    "SyntheticEvaluator",
    "load_result",
]
