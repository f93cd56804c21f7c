"""Lightning callbacks that sit above the methods (they train evaluators while a distiller runs)."""

from ddlight.callbacks.evaluate import EvaluateSyntheticCallback

__all__ = ["EvaluateSyntheticCallback"]
