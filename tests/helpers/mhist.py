"""A tiny MHIST look-alike in the official layout, since the real set is under a data-use agreement."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

HEADER = (
    "Image Name",
    "Majority Vote Label",
    "Number of Annotators who Selected SSA (Out of 7)",
    "Partition",
)


def _name(i: int) -> str:
    # Official names are three lowercase letters: MHIST_aaa.png, MHIST_aab.png, ...
    a, rest = divmod(i, 26 * 26)
    b, c = divmod(rest, 26)
    return "MHIST_" + "".join(chr(ord("a") + k) for k in (a, b, c)) + ".png"


def make_mhist_fixture(
    root: Path, n_train: int = 12, n_test: int = 6, size: int = 224, seed: int = 0
) -> Path:
    """Write ``annotations.csv`` and ``images/*.png`` under ``root`` and return ``root``.

    Classes alternate HP, SSA, HP, ... within each partition, so both occur in both when a partition has
    at least two rows; SSA rows are fewer when the count is odd, mimicking the real imbalance. Annotator
    counts cycle through every value consistent with the majority (HP: 0..3 SSA votes, SSA: 4..7), so
    ``min_agreement`` filters have something to remove.
    """
    if n_train < 2 or n_test < 2:
        raise ValueError("need at least 2 rows per partition so that both classes appear in each")
    root = Path(root)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    i = 0
    for partition, n in (("train", n_train), ("test", n_test)):
        for j in range(n):
            label = "HP" if j % 2 == 0 else "SSA"
            k = j // 2
            n_ssa = (3 - k % 4) if label == "HP" else (4 + k % 4)
            # Coarse noise upsampled, tinted per class: cheap to write, yet images differ and carry signal.
            coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.int16) + (40 if label == "SSA" else -40)
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(img_dir / _name(i))
            rows.append((_name(i), label, n_ssa, partition))
            i += 1
    with (root / "annotations.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return root
