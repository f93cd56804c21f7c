"""Lightning stages: one module per method."""

from ddlight.methods.baseline import Baseline
from ddlight.methods.evaluator import SyntheticEvaluator
from ddlight.methods.matching import DataDAM
from ddlight.methods.trajectory import PAD, ExpertBuffer, Experts

__all__ = ["Baseline", "DataDAM", "SyntheticEvaluator", "ExpertBuffer", "Experts", "PAD"]
