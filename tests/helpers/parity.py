"""Reading the parity fixtures that ``python -m benchmarks.parity`` writes (format:
``benchmarks/parity/fixtures.py``) and checking ddlight's numbers against the authors' within the
tolerance the fixture's manifest states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def load(name: str) -> dict[str, Any]:
    path = FIXTURES / f"{name}.pt"
    if not path.is_file():
        pytest.fail(f"parity fixture {path} is missing: python -m benchmarks.parity {name} --official PATH")
    return torch.load(path, weights_only=False)


def assert_matches(
    fixture: dict[str, Any],
    label: str,
    ours: torch.Tensor,
    theirs: torch.Tensor,
    *,
    relative_to_max: bool = False,
) -> None:
    """ours == theirs within the manifest's tolerance, with the largest difference in the message.

    ``relative_to_max``: also allow ``rtol`` times the largest magnitude of ``theirs`` per element, the
    harness's own measure (``benchmarks/parity/fixtures.difference``); elementwise ``rtol`` alone fails
    entries near zero that rounding moved by far less than the tensor's scale (an image update is the
    difference of two O(1) images)."""
    tol = fixture["manifest"]["tolerance"]
    atol = tol["atol"]
    if relative_to_max and theirs.numel():
        atol = max(atol, tol["rtol"] * theirs.detach().abs().max().item())
    torch.testing.assert_close(
        ours.detach().to(theirs.dtype),
        theirs,
        rtol=tol["rtol"],
        atol=atol,
        msg=lambda m: (
            f"{label} differs from {fixture['manifest']['repo']} {fixture['manifest']['function']}: {m}"
        ),
    )
