"""Gradient matching: synthetic sets whose per-class training gradients in a network being trained match
the real data's. DC, and DSA: DC with a Siamese augmentation strategy (its own class, released defaults)."""

from ddlight.methods.gradient.dc import DC, get_loops
from ddlight.methods.gradient.dsa import DSA

__all__ = ["DC", "DSA", "get_loops"]
