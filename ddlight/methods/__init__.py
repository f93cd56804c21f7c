"""Lightning stages: one module per method."""

from ddlight.methods.baseline import Baseline
from ddlight.methods.evaluator import SyntheticEvaluator
from ddlight.methods.gradient import DC
from ddlight.methods.matching import DM, DataDAM
from ddlight.methods.trajectory import PAD, ExpertBuffer, Experts

__all__ = ["Baseline", "DC", "DM", "DataDAM", "SyntheticEvaluator", "ExpertBuffer", "Experts", "PAD"]
