"""ddlight: dataset distillation as PyTorch Lightning stages."""

__version__ = "0.1.0"
