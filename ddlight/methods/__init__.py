"""Lightning stages: one module per method."""

from ddlight.methods.baseline import Baseline
from ddlight.methods.evaluator import SyntheticEvaluator
from ddlight.methods.gradient import DC, DSA
from ddlight.methods.matching import DM, DataDAM
from ddlight.methods.trajectory import DATM, MTT, PAD, ExpertBuffer, Experts

__all__ = [
    "DATM",
    "DC",
    "DM",
    "DSA",
    "MTT",
    "PAD",
    "Baseline",
    "DataDAM",
    "ExpertBuffer",
    "Experts",
    "SyntheticEvaluator",
]
