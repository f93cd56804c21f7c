"""MHIST: colorectal polyp patches, hyperplastic polyp (HP) vs sessile serrated adenoma (SSA).

The images are released under a data-use agreement, so nothing is downloaded: the loader reads the
layout the authors distribute, unchanged, and refuses anything else with an error that says what was
expected, because a silently mis-read label or partition would corrupt every accuracy reported on it.

Expected layout (official: 2,175 train / 977 test, 224x224 RGB)::

    <data_dir>/annotations.csv   columns: Image Name, Majority Vote Label (HP|SSA),
                                 Number of Annotators who Selected SSA (Out of 7), Partition (train|test)
    <data_dir>/images/MHIST_aaa.png ...
"""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ddlight.data.base import RealDataModule

log = logging.getLogger("ddlight")

# Fixed rather than derived from the CSV's row order, so that class indices (and SSA as the positive,
# clinically important class) are the same in every run and checkpoint.
LABELS: dict[str, int] = {"HP": 0, "SSA": 1}
PARTITIONS = ("train", "test")
NUM_ANNOTATORS = 7

COL_NAME = "Image Name"
COL_LABEL = "Majority Vote Label"
COL_N_SSA = "Number of Annotators who Selected SSA (Out of 7)"
COL_PARTITION = "Partition"
COLUMNS = (COL_NAME, COL_LABEL, COL_N_SSA, COL_PARTITION)

# Written by ddlight.data.mhist_layout beside its generated files: a run on them is a pipeline check
# and says so.
GENERATED_MARKER = "GENERATED.txt"
# What a user without MHIST can still do; appended where the folder itself is missing.
TRY_GENERATED = (
    "To try the whole pipeline without MHIST, write an MHIST-shaped set of generated images with "
    "`python -m ddlight.data.mhist_layout data/mhist_generated` and add "
    "`--data.init_args.data_dir data/mhist_generated`; results on it are meaningless"
)

LAYOUT = (
    "Expected the official MHIST layout: <data_dir>/annotations.csv with columns "
    f"{', '.join(repr(c) for c in COLUMNS)} (labels HP|SSA, annotator count 0..7, partition train|test), "
    "and the 224x224 RGB PNGs in <data_dir>/images/ (official: 2,175 train / 977 test)."
)


@dataclass(frozen=True)
class MHISTRow:
    """One validated annotation; ``line`` is kept so that image errors can point back into the CSV."""

    line: int
    name: str
    label: int
    n_ssa: int
    partition: str

    @property
    def agreement(self) -> int:
        """Annotators who agree with the majority label (4..7 for consistent official rows)."""
        return self.n_ssa if self.label == LABELS["SSA"] else NUM_ANNOTATORS - self.n_ssa


def read_annotations(csv_path: Path) -> list[MHISTRow]:
    """Parse and validate ``annotations.csv``; every error names the file, the line and what was expected."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"MHIST annotations file not found: {csv_path}. {LAYOUT}")
    rows: list[MHISTRow] = []
    # utf-8-sig: a CSV re-saved by a spreadsheet program gains a BOM that would otherwise glue itself
    # to the first column name and make 'Image Name' look missing.
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{csv_path} is empty; it needs a header row. {LAYOUT}")
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; found columns {header}. {LAYOUT}")
        col = {c: header.index(c) for c in COLUMNS}
        for fields in reader:
            line = reader.line_num
            if not any(v.strip() for v in fields):
                continue
            if len(fields) < len(header):
                raise ValueError(
                    f"{csv_path}, line {line}: expected {len(header)} fields, found {len(fields)}. {LAYOUT}"
                )
            name, label, n_ssa_s, part = (fields[col[c]].strip() for c in COLUMNS)
            where = f"{csv_path}, line {line}"
            if not name:
                raise ValueError(f"{where}: empty {COL_NAME!r}. {LAYOUT}")
            if label not in LABELS:
                raise ValueError(
                    f"{where}: unknown {COL_LABEL!r} value {label!r}; allowed: {', '.join(LABELS)}. {LAYOUT}"
                )
            if part not in PARTITIONS:
                raise ValueError(
                    f"{where}: unknown {COL_PARTITION!r} value {part!r}; allowed: {', '.join(PARTITIONS)}. "
                    f"{LAYOUT}"
                )
            n_ssa = int(n_ssa_s) if n_ssa_s.isdecimal() else -1
            if not 0 <= n_ssa <= NUM_ANNOTATORS:
                raise ValueError(
                    f"{where}: {COL_N_SSA!r} must be an integer 0..{NUM_ANNOTATORS}, "
                    f"got {n_ssa_s!r}. {LAYOUT}"
                )
            rows.append(MHISTRow(line, name, LABELS[label], n_ssa, part))
    return rows


def load_image(path: Path, size: int, where: str) -> np.ndarray:
    """One PNG as a (size, size, 3) uint8 array; ``where`` locates the CSV row in error messages."""
    if not path.is_file():
        raise FileNotFoundError(f"MHIST image not found: {path} (listed at {where}). {LAYOUT}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                # Pillow's bicubic resize widens its kernel when shrinking, i.e. it antialiases, which
                # matters here: 224 -> 32 by point sampling would alias away the tissue texture.
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.array(im, dtype=np.uint8)
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError or SyntaxError for bad files
        raise ValueError(
            f"MHIST image {path} (listed at {where}) is unreadable or corrupt: "
            f"{type(err).__name__}: {err}. {LAYOUT}"
        ) from err


class MHISTDataModule(RealDataModule):
    """MHIST (Wei et al., 2021) as uint8 tensors, normalised per batch with ImageNet statistics.

    Labels are HP = 0, SSA = 1. The set is imbalanced (roughly 70% HP), so class counts are logged on
    setup and are available from ``describe()``.

    Args:
        data_dir: folder holding ``annotations.csv`` and ``images/`` exactly as distributed.
        image_size: side length the images are resized to once, at load time; smaller than the native
            224 makes CPU runs feasible (memory and compute shrink quadratically).
        min_agreement: keep only images where at least this many of the 7 pathologists agree with the
            majority label, a common way to study label noise; 0 keeps all. Values 1..4 keep everything
            too, since a majority of 7 is always at least 4.
        **kwargs: :class:`~ddlight.data.base.RealDataModule`'s (val_fraction, seed, episode_per_class, zca,
            zca_reg), as documented for :class:`~ddlight.data.mnist.MNISTDataModule`.
    """

    name = "mhist"
    num_classes = 2
    channels = 3
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    class_names = tuple(LABELS)

    def __init__(
        self,
        data_dir: str = "data/mhist",
        image_size: int = 224,
        min_agreement: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, **kwargs)
        if image_size < 1:
            raise ValueError(f"MHISTDataModule.image_size must be a positive integer, got {image_size}")
        if not 0 <= min_agreement <= NUM_ANNOTATORS:
            raise ValueError(
                f"MHISTDataModule.min_agreement must be in 0..{NUM_ANNOTATORS}, got {min_agreement}"
            )
        self.data_dir = data_dir
        # Not ``self.image_size``: the base class exposes that as the (H, W) of the loaded tensors.
        self.target_size = image_size
        self.im_size = image_size
        self.min_agreement = min_agreement
        self._rows: list[MHISTRow] | None = None

    @property
    def csv_path(self) -> Path:
        return Path(self.data_dir) / "annotations.csv"

    def _annotations(self) -> list[MHISTRow]:
        # Parsed once for both splits, so a bad row anywhere fails before any image is decoded.
        if self._rows is None:
            root = Path(self.data_dir)
            if not root.is_dir():
                # No LAYOUT here: this is the first-contact message, and the folder is simply absent.
                raise FileNotFoundError(
                    f"MHIST data_dir not found: {root.resolve()}. MHIST is not downloadable (data-use "
                    "agreement): request it from its authors and unpack annotations.csv and images/ there, "
                    f"or point --data.init_args.data_dir at it. {TRY_GENERATED}."
                )
            if (root / GENERATED_MARKER).is_file():
                warnings.warn(
                    f"{root} holds a generated MHIST-shaped set ({GENERATED_MARKER}), not MHIST: anything "
                    "distilled, trained or scored on it is meaningless",
                    UserWarning,
                    stacklevel=2,
                )
            self._rows = read_annotations(self.csv_path)
        return self._rows

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in PARTITIONS:
            raise ValueError(f"MHIST split must be one of {PARTITIONS}, got {split!r}")
        all_rows = [r for r in self._annotations() if r.partition == split]
        if not all_rows:
            raise ValueError(
                f"{self.csv_path}: no rows with {COL_PARTITION!r} == {split!r} (official: 2,175 train / "
                f"977 test). {LAYOUT}"
            )
        rows = [r for r in all_rows if r.agreement >= self.min_agreement]
        if not rows:
            raise ValueError(
                f"{self.csv_path}: min_agreement={self.min_agreement} leaves no {split!r} images "
                f"(of {len(all_rows)}); lower it."
            )
        size = self.target_size
        images = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
        img_dir = Path(self.data_dir) / "images"
        for i, r in enumerate(rows):
            arr = load_image(img_dir / r.name, size, f"{self.csv_path}, line {r.line}")
            images[i] = torch.from_numpy(arr).permute(2, 0, 1)
        labels = torch.tensor([r.label for r in rows], dtype=torch.long)
        return images, labels

    def setup(self, stage: str | None = None) -> None:
        fresh = not self._loaded
        super().setup(stage)
        if fresh:
            log.info(
                "MHIST from %s (image_size=%d, min_agreement=%d) class counts: %s",
                self.data_dir,
                self.target_size,
                self.min_agreement,
                self.describe(),
            )
