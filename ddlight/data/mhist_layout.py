"""Writes MHIST-shaped data in the official layout (``annotations.csv`` + ``images/MHIST_*.png``).

MHIST itself is under a data-use agreement and never on these machines, but what it costs to distil does
not depend on its pixels: tests write a few images, ``benchmarks/mhist_speed.py`` the official 2,175 /
977 split with its class balance, and both are then read by :class:`~ddlight.data.MHISTDataModule`
exactly as the real files would be.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ddlight.data.mhist import COLUMNS

# The released split: train HP 1,545 / SSA 630, test HP 617 / SSA 360 (2,175 / 977 images).
OFFICIAL_COUNTS = {"train": (1545, 630), "test": (617, 360)}


def image_name(i: int) -> str:
    """Official names are three lowercase letters: MHIST_aaa.png, MHIST_aab.png, ..."""
    a, rest = divmod(i, 26 * 26)
    b, c = divmod(rest, 26)
    return "MHIST_" + "".join(chr(ord("a") + k) for k in (a, b, c)) + ".png"


def interleaved(hp: int, ssa: int) -> list[tuple[str, int]]:
    """(label, index within its class): HP, SSA, HP, ... while both last, then the rest of the larger."""
    out, counts = [], {"HP": 0, "SSA": 0}
    for j in range(hp + ssa):
        label = "HP" if (j % 2 == 0 and counts["HP"] < hp) or counts["SSA"] >= ssa else "SSA"
        out.append((label, counts[label]))
        counts[label] += 1
    return out


def write_mhist_layout(
    root: Path, counts: dict[str, tuple[int, int]] | None = None, size: int = 224, seed: int = 0
) -> Path:
    """Write ``annotations.csv`` and ``images/*.png`` under ``root`` (``counts``: partition -> (HP, SSA),
    the official split by default) and return ``root``.

    Images are coarse noise upsampled and tinted per class: cheap to write, different from each other and
    learnable. Annotator counts cycle through every value consistent with the majority (HP: 0..3 SSA
    votes, SSA: 4..7), so agreement filters have something to remove.
    """
    counts = counts or OFFICIAL_COUNTS
    root = Path(root)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, i = [], 0
    for partition in ("train", "test"):
        for label, k in interleaved(*counts[partition]):
            n_ssa = (3 - k % 4) if label == "HP" else (4 + k % 4)
            coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.int16) + (40 if label == "SSA" else -40)
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(img_dir / image_name(i))
            rows.append((image_name(i), label, n_ssa, partition))
            i += 1
    with (root / "annotations.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return root
