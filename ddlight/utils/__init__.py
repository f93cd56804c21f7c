"""Process-level helpers that are neither data, models, methods nor ops."""

from ddlight.utils.memory import limit_heap_retention

__all__ = ["limit_heap_retention"]
