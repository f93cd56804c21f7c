"""Process-level helpers that are neither data, models, methods nor ops."""

from ddlight.utils.memory import configure_heap

__all__ = ["configure_heap"]
