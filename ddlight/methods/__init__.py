"""Lightning stages: one module per method."""

from ddlight.methods.baseline import BaselineTrainer

__all__ = ["BaselineTrainer"]
