"""Reading image files for Tiny-ImageNet's official tree and any ``train/``/``test/`` ImageFolder.

Both are read once with PIL into uint8 tensors (a loop over files at load time; nothing per sample runs
while training). Every refusal names the file and what was expected: an image of the wrong size (Tiny-
ImageNet is 64x64 by definition; an ImageFolder is resized once instead), an image mode that cannot be
turned into 8-bit RGB/grey without inventing data (alpha, 16-bit, float), a missing split, an empty class
folder, a class of ``test/`` absent from ``train/``, an unknown wnid in ``val_annotations.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddlight.data.base import DatasetFileError

# 8-bit modes that convert to RGB or L exactly; others (RGBA, LA, I;16, I, F, CMYK, 1, ...) are refused.
ACCEPTED_MODES = ("RGB", "L", "P")
TINY_LAYOUT = (
    "tiny-imagenet-200/wnids.txt (200 wnids), train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
    "val/val_annotations.txt (file<TAB>wnid<TAB>box), as unpacked from the official tiny-imagenet-200.zip"
)


def read_image(path: Path, mode: str, size: int, resize: bool) -> np.ndarray:
    """One image as (H, W, C) uint8 in ``mode`` ("RGB" or "L"); resized to ``size`` when ``resize``,
    else refused unless it already is ``size`` x ``size``."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ACCEPTED_MODES:
                raise DatasetFileError(
                    f"{path}: image mode {im.mode!r}; expected 8-bit {' / '.join(ACCEPTED_MODES)} without "
                    f"alpha (converted to {mode}). Convert the file (e.g. to RGB) first"
                )
            if im.size != (size, size):
                if not resize:
                    raise DatasetFileError(
                        f"{path}: image of {im.size[0]}x{im.size[1]} pixels; expected {size}x{size}"
                    )
                # Bicubic, and Pillow antialiases when shrinking: resized once here, never per batch.
                im = im.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError) as err:  # PIL: UnidentifiedImageError is an OSError
        raise DatasetFileError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err
    return arr[..., None] if arr.ndim == 2 else arr


def stack_images(paths: list[Path], mode: str, size: int, resize: bool) -> torch.Tensor:
    """(N, C, size, size) uint8 from files, written into one preallocated array."""
    channels = 3 if mode == "RGB" else 1
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = read_image(p, mode, size, resize)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_wnids(root: Path, expected: int) -> list[str]:
    path = root / "wnids.txt"
    if not path.is_file():
        raise FileNotFoundError(f"Tiny-ImageNet: {path} not found. Expected layout: {TINY_LAYOUT}")
    wnids = [w.strip() for w in path.read_text().splitlines() if w.strip()]
    if len(wnids) != expected or len(set(wnids)) != len(wnids):
        raise DatasetFileError(
            f"{path}: {len(wnids)} wnids ({len(set(wnids))} distinct); expected {expected}"
        )
    return wnids


def read_words(root: Path, wnids: list[str]) -> tuple[str, ...]:
    """Human-readable class names from ``words.txt`` (first synonym), the wnid where it is absent."""
    words: dict[str, str] = {}
    path = root / "words.txt"
    if path.is_file():
        for line in path.read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    return tuple(words.get(w) or w for w in wnids)


def tiny_train_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for k, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        files = sorted(folder.glob("*.JPEG")) if folder.is_dir() else []
        if not files:
            raise DatasetFileError(
                f"Tiny-ImageNet: no *.JPEG in {folder} (wnid {wnid} of wnids.txt); expected the class's "
                f"500 training images there. Layout: {TINY_LAYOUT}"
            )
        paths += files
        labels += [k] * len(files)
    return paths, labels


def tiny_val_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"Tiny-ImageNet: {ann} not found (the test split). Layout: {TINY_LAYOUT}")
    index = {w: k for k, w in enumerate(wnids)}
    paths, labels = [], []
    for n, line in enumerate(ann.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            got = fields[1].strip() if len(fields) > 1 else "no second field"
            raise DatasetFileError(
                f"{ann}, line {n}: wnid {got!r} is not one of the {len(wnids)} in wnids.txt; expected "
                "'<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>'"
            )
        paths.append(root / "val" / "images" / fields[0].strip())
        labels.append(index[fields[1].strip()])
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Tiny-ImageNet: {len(missing)} image(s) listed in {ann} missing, e.g. {missing[0]}"
        )
    return paths, labels
