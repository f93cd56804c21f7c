"""Gradient matching: synthetic sets whose per-class training gradients in a network being trained match
the real data's. DC, and DSA as DC with a Siamese augmentation strategy."""

from ddlight.methods.gradient.dc import DC, get_loops

__all__ = ["DC", "get_loops"]
