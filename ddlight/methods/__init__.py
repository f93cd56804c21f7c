"""Lightning stages: one module per method."""

from ddlight.methods.baseline import Baseline
from ddlight.methods.datadam import DataDAM
from ddlight.methods.evaluator import SyntheticEvaluator
from ddlight.methods.experts import ExpertBuffer, ExpertTrainer
from ddlight.methods.pad import PAD

__all__ = ["Baseline", "DataDAM", "SyntheticEvaluator", "ExpertBuffer", "ExpertTrainer", "PAD"]
