"""Synthetic (distilled) sets: one versioned, validated file format, and a data module that trains on it.

A distilled set is the whole product of a distillation run and the only input of evaluation, so it is
written atomically (a crash mid-save must not destroy the previous good set) and validated field by field
on load (a silently wrong label layout or normalisation would corrupt every reported accuracy). Files are
read with ``weights_only=True``, which is why only tensors and JSON-like values are ever stored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddlight.utils.classwise import denormalize, rank_within_class
from ddlight.utils.io import atomic_path, atomic_torch_save
from ddlight.utils.jsonable import jsonable, storable

# Bump when the stored layout changes; load() refuses other versions rather than guessing.
FORMAT_VERSION = 1

REQUIRED_KEYS = (
    "format_version",
    "images",
    "labels",
    "mean",
    "std",
    "num_classes",
    "method",
    "dataset",
    "ipc",
)
# Tolerance for comparing normalisation statistics: they round-trip through Python floats exactly, so
# anything larger is a genuinely different normalisation.
STATS_ATOL = 1e-6


class SyntheticSetError(ValueError):
    """A synthetic-set file (or object) is malformed or does not fit the data it is used with."""


class SyntheticSetNotFoundError(SyntheticSetError, FileNotFoundError):
    """Also a FileNotFoundError, so callers that only care about existence can catch that."""


def _fail(path: Path | str, key: str, expected: str, got: Any) -> SyntheticSetError:
    return SyntheticSetError(f"synthetic set {path}: field '{key}': expected {expected}, got {got}")


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:200]


def _check_int(d: dict, key: str, path: Path | str, minimum: int | None) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
        raise _fail(path, key, "an int" + ("" if minimum is None else f" >= {minimum}"), _describe(v))
    return v


def _check_stats(d: dict, key: str, path: Path | str, channels: int) -> tuple[float, ...]:
    v = d[key]
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) for s in v
    ):
        raise _fail(path, key, "a list of floats (one per channel)", _describe(v))
    if len(v) != channels:
        raise _fail(path, key, f"{channels} value(s), one per image channel", f"{len(v)}: {list(v)}")
    if not all(math.isfinite(s) for s in v) or (key == "std" and not all(s > 0 for s in v)):
        raise _fail(path, key, "finite values" + (" > 0" if key == "std" else ""), list(v))
    return tuple(float(s) for s in v)


def _check_header(d: Any, path: Path | str) -> None:
    if not isinstance(d, dict):
        raise SyntheticSetError(
            f"synthetic set {path}: expected a dict saved by SyntheticSet.save, got {type(d).__name__}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise SyntheticSetError(
            f"synthetic set {path}: missing field(s) {missing}; found {sorted(map(str, d))}. "
            "Was it written by SyntheticSet.save?"
        )
    version = d["format_version"]
    if version != FORMAT_VERSION:
        raise _fail(path, "format_version", f"{FORMAT_VERSION} (this ddlight's format)", _describe(version))
    for key in ("method", "dataset"):
        if not isinstance(d[key], str):
            raise _fail(path, key, "a str", _describe(d[key]))


def _check_images(images: Any, path: Path | str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise _fail(path, "images", "a 4-D float tensor (N, C, H, W)", _describe(images))
    if images.shape[0] == 0:
        raise _fail(path, "images", "at least one image", _describe(images))
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).sum())
        raise _fail(path, "images", "finite values only", f"{bad} NaN/inf entries")
    return images.float().contiguous()


def _check_labels(labels: Any, path: Path | str, n: int, num_classes: int, ipc: int) -> torch.Tensor:
    """Hard (N,) int labels in range with ipc * num_classes images, or finite soft (N, K) logits."""
    if not isinstance(labels, torch.Tensor):
        raise _fail(path, "labels", "a tensor", _describe(labels))
    soft = labels.dim() == 2 and labels.is_floating_point()
    hard = labels.dim() == 1 and not labels.is_floating_point() and not labels.is_complex()
    if hard and labels.dtype == torch.bool:
        raise _fail(path, "labels", "int64 class indices, not bool", _describe(labels))
    if not (soft or hard):
        raise _fail(
            path,
            "labels",
            "int64 hard labels of shape (N,) or float soft labels of shape (N, K)",
            _describe(labels),
        )
    labels = labels.float() if soft else labels.long()
    if labels.shape[0] != n:
        raise _fail(path, "labels", f"one label per image ({n})", f"{labels.shape[0]} labels")
    if soft:
        if labels.shape[1] != num_classes:
            raise _fail(
                path, "labels", f"soft labels with K = num_classes = {num_classes}", _describe(labels)
            )
        if not bool(torch.isfinite(labels).all()):
            raise _fail(path, "labels", "finite soft labels", "NaN/inf entries")
        return labels.contiguous()
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise _fail(path, "labels", f"class indices in [0, {num_classes})", f"values in [{lo}, {hi}]")
    if n != ipc * num_classes:
        raise _fail(
            path, "ipc", f"ipc * num_classes = {ipc} * {num_classes} = {ipc * num_classes} images", f"{n}"
        )
    return labels.contiguous()


def _validate(d: Any, path: Path | str) -> dict[str, Any]:
    """Check a stored payload and return the constructor arguments of a SyntheticSet."""
    _check_header(d, path)
    num_classes = _check_int(d, "num_classes", path, 1)
    ipc = _check_int(d, "ipc", path, 1)
    images = _check_images(d["images"], path)
    n, channels = images.shape[:2]
    out: dict[str, Any] = {
        "images": images,
        "labels": _check_labels(d["labels"], path, n, num_classes, ipc),
        "mean": _check_stats(d, "mean", path, channels),
        "std": _check_stats(d, "std", path, channels),
        "num_classes": num_classes,
        "method": d["method"],
        "dataset": d["dataset"],
        "ipc": ipc,
    }
    for key, default in (("iteration", 0), ("seed", 0)):
        out[key] = _check_int(d, key, path, 0 if key == "iteration" else None) if key in d else default
    # Optional (older files lack it): why the set is not a finished run's, "" for a finished one.
    partial = d.get("partial", "")
    if not isinstance(partial, str):
        raise _fail(path, "partial", "a str (empty for a finished run)", _describe(partial))
    out["partial"] = partial
    out.update(_validate_identity(d, path))
    for key in ("config", "extra"):
        v = d.get(key, {})
        if not isinstance(v, dict):
            raise _fail(path, key, "a dict", _describe(v))
        out[key] = v
    return out


def _validate_identity(d: dict, path: Path | str) -> dict[str, Any]:
    """The optional identity fields (absent from older files): class names, ZCA record, test digest."""
    names = d.get("class_names", [])
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise _fail(path, "class_names", "a list of str", _describe(names))
    if names and len(names) != d["num_classes"]:
        raise _fail(path, "class_names", f"num_classes = {d['num_classes']} names", f"{len(names)}")
    zca = d.get("zca", {})
    if not isinstance(zca, dict) or (zca and not isinstance(zca.get("reg"), (int, float))):
        raise _fail(path, "zca", "{} or a dict with a float 'reg'", _describe(zca))
    digest = d.get("test_sha256", "")
    if not isinstance(digest, str):
        raise _fail(path, "test_sha256", "a str", _describe(digest))
    return {"class_names": list(names), "zca": dict(zca), "test_sha256": digest}


@dataclass(eq=False)  # tensor fields make field-wise == ambiguous; compare fields explicitly instead
class SyntheticSet:
    """A distilled set plus everything needed to evaluate, display and reproduce it."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    method: str
    dataset: str
    ipc: int
    iteration: int = 0
    seed: int = 0
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # Non-empty for a set exported before its run finished (checkpoint, interrupt, divergence): the reason.
    partial: str = ""
    # The real data's identity (RealDataModule.identity): empty in files older than these fields.
    class_names: list = field(default_factory=list)
    # {} for a set distilled without ZCA, else {"reg": eps, "fit_sha256": digest of the fitted-on images}.
    zca: dict = field(default_factory=dict)
    test_sha256: str = ""

    @property
    def is_soft(self) -> bool:
        return self.labels.dim() == 2

    @property
    def hard_labels(self) -> torch.Tensor:
        return self.labels.argmax(dim=1) if self.is_soft else self.labels

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.images.shape[2]), int(self.images.shape[3]))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_payload(self) -> dict[str, Any]:
        """The dict that is stored: tensors on CPU, tuples as lists, config reduced to JSON-like values."""
        return {
            "format_version": FORMAT_VERSION,
            "images": self.images.detach().cpu().float().contiguous(),
            "labels": self.labels.detach().cpu().contiguous(),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "num_classes": int(self.num_classes),
            "method": str(self.method),
            "dataset": str(self.dataset),
            "ipc": int(self.ipc),
            "iteration": int(self.iteration),
            "seed": int(self.seed),
            "config": jsonable(dict(self.config)),
            "extra": storable(dict(self.extra)),
            "partial": str(self.partial),
            "class_names": [str(c) for c in self.class_names],
            "zca": jsonable(dict(self.zca)),
            "test_sha256": str(self.test_sha256),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Validate, then write atomically; refusing here beats discovering an unloadable set at eval time."""
        path = Path(path)
        payload = self.to_payload()
        _validate(payload, path)
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyntheticSet:
        path = Path(path)
        if not path.is_file():
            raise SyntheticSetNotFoundError(f"synthetic set file not found: {path.resolve()}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # zip/pickle/EOF errors differ by torch version; all mean "not our file"
            raise SyntheticSetError(
                f"synthetic set {path}: not a readable torch file written by SyntheticSet.save "
                f"(truncated, corrupt, or holding objects other than tensors and JSON-like values); "
                f"{type(err).__name__}, see the chained exception"
            ) from err
        return cls(**_validate(payload, path))

    def grid_tensor(self, max_per_class: int = 20, display: Callable | None = None) -> torch.Tensor:
        """(3, H, W) image in [0, 1]: one row per class, so per-class quality can be judged at a glance.

        ``display`` maps stored images to [0, 1] (a data module's ``normalizer.display``, which un-whitens a
        ZCA set); without it the set's mean/std are undone, which shows a ZCA set in its whitened space."""
        from torchvision.utils import make_grid

        cols = max(1, min(self.ipc, max_per_class))
        raw = self.images.detach().cpu().float()
        if display is not None:
            images = display(raw).clamp(0, 1)
        else:
            images = denormalize(raw, self.mean_t, self.std_t)
        hard = self.hard_labels.detach().cpu()
        # Soft labels may put more or fewer than ipc images in a class; blank tiles keep rows aligned.
        tiles = images.new_zeros((self.num_classes * cols, *images.shape[1:]))
        rank, _ = rank_within_class(torch.arange(len(hard)), hard, self.num_classes)
        keep = rank < cols
        tiles[hard[keep] * cols + rank[keep]] = images[keep]
        grid = make_grid(tiles, nrow=cols, padding=2)
        return grid if grid.shape[0] == 3 else grid[:1].expand(3, -1, -1).contiguous()

    def save_grid(
        self, path: str | os.PathLike, nrow: int | None = None, display: Callable | None = None
    ) -> Path:
        """Write the class-per-row grid as PNG; ``nrow`` caps images per class (default min(ipc, 20))."""
        from torchvision.utils import save_image

        path = Path(path)
        grid = self.grid_tensor(max_per_class=20 if nrow is None else nrow, display=display)
        with atomic_path(path, ".tmp.png") as tmp:
            save_image(grid, tmp, format="png")
        return path

    @property
    def mean_t(self) -> torch.Tensor:
        return torch.tensor(self.mean, dtype=torch.float32)

    @property
    def std_t(self) -> torch.Tensor:
        return torch.tensor(self.std, dtype=torch.float32)
