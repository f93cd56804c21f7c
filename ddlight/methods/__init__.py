"""Lightning stages: one module per method."""

from ddlight.methods.baseline import Baseline
from ddlight.methods.distiller import Distiller
from ddlight.methods.gradient import DC, DSA
from ddlight.methods.matching import DM, DataDAM
from ddlight.methods.trajectory import DATM, MTT, PAD, ExpertBuffer, Experts

# Every distillation method by its ``method_name`` (the key configs and reports use).
DISTILLERS: dict[str, type[Distiller]] = {m.method_name: m for m in (DC, DSA, DM, DataDAM, MTT, DATM, PAD)}

__all__ = [
    "DISTILLERS",
    "DATM",
    "DC",
    "DM",
    "DSA",
    "MTT",
    "PAD",
    "Baseline",
    "DataDAM",
    "Distiller",
    "ExpertBuffer",
    "Experts",
]
