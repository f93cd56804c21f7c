"""Reducing configs and metadata to JSON-like values, the only non-tensor content ddlight's files hold
(they are read back with ``weights_only=True``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import torch


def jsonable(obj: Any) -> Any:
    """Reduce a config to JSON-like values so the file loads under ``weights_only=True`` and logs cleanly."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, torch.nn.Module):  # an injected network: its class path names it in a config
        return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    if callable(getattr(obj, "tolist", None)):  # numpy arrays and scalars
        try:
            return jsonable(obj.tolist())
        except Exception:  # anything odd falls back to its string form below
            pass
    return str(obj)


def storable(obj: Any) -> Any:
    """Like :func:`jsonable` but keeps tensors (e.g. a learned per-step lr), detached and on CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().contiguous().clone()
    if isinstance(obj, dict):
        return {str(k): storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [storable(v) for v in obj]
    return jsonable(obj)
