"""A tiny MHIST look-alike in the official layout, since the real set is under a data-use agreement."""

from __future__ import annotations

from pathlib import Path

from ddlight.data.mhist import COLUMNS
from ddlight.data.mhist_layout import write_mhist_layout

HEADER = COLUMNS


def make_mhist_fixture(
    root: Path, n_train: int = 12, n_test: int = 6, size: int = 224, seed: int = 0
) -> Path:
    """``n_train`` / ``n_test`` images alternating HP, SSA, ... (SSA fewer when a count is odd, mimicking
    the real imbalance), written by :func:`ddlight.data.mhist_layout.write_mhist_layout`."""
    if n_train < 2 or n_test < 2:
        raise ValueError("need at least 2 rows per partition so that both classes appear in each")
    counts = {p: ((n + 1) // 2, n // 2) for p, n in (("train", n_train), ("test", n_test))}
    return write_mhist_layout(Path(root), counts, size, seed)
