"""The fixture format shared by the harness (writer) and ``tests/helpers/parity.py`` (reader).

A fixture is one ``torch.save`` dict: ``manifest`` (repository, commit, file, function, tolerance, how
it was made), ``inputs`` (the identical starting state) and ``outputs`` (what the authors' code computed
from it). Tensors are stored contiguous and detached so that a fixture stays a few kilobytes.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "parity"


def _plain(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().contiguous().clone()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def manifest(
    repo: str, commit: str, file: str, function: str, rtol: float, atol: float, note: str = ""
) -> dict[str, Any]:
    """What a fixture's numbers were produced by, and how closely ddlight must match them."""
    return {
        "repo": repo,
        "commit": commit,
        "file": file,
        "function": function,
        "tolerance": {"rtol": rtol, "atol": atol},
        "note": note,
        "made": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "host": platform.processor() or platform.machine(),
    }


def write(name: str, manifest: dict[str, Any], inputs: dict, outputs: dict, out: Path = FIXTURES) -> Path:
    """Write ``<out>/<name>.pt`` atomically (a half-written fixture must never be read as a golden one)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"manifest": manifest, "inputs": _plain(inputs), "outputs": _plain(outputs)}, tmp)
    os.replace(tmp, path)
    return path


def difference(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(largest absolute, largest relative) difference; relative to the largest magnitude of theirs, so
    that entries near zero do not blow the ratio up."""
    ours, theirs = ours.detach().double(), theirs.detach().double()
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: ours {tuple(ours.shape)}, theirs {tuple(theirs.shape)}")
    abs_diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    scale = theirs.abs().max().item() if theirs.numel() else 0.0
    return abs_diff, abs_diff / scale if scale > 0 else abs_diff


def print_rows(
    method: str, rows: list[tuple[str, torch.Tensor, torch.Tensor]], rtol: float, atol: float = 0.0
) -> bool:
    """Print one line per quantity (largest abs / rel difference, verdict); True when all are within.

    A quantity is within when its relative difference is at most ``rtol`` or its absolute difference at
    most ``atol``: the latter for differences below what fp32 can resolve, e.g. a tiny image update
    read as (images after - images before), where one rounding of a pixel value is already 2.4e-7."""
    ok = True
    tol = f"rel {rtol:g}" + (f" or abs {atol:g}" if atol else "")
    print(f"{method}: quantity, largest abs diff, largest rel diff (tolerance {tol})")
    for label, ours, theirs in rows:
        a, r = difference(ours, theirs)
        good = r <= rtol or a <= atol
        ok &= good
        print(f"  {label:<32} {a:12.3e} {r:12.3e}  {'ok' if good else 'DIFFERS'}")
    return ok
