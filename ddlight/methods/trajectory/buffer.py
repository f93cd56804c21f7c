"""The expert buffer on disk: the contract between trajectory matching's two stages.

Stage 1 (:class:`~ddlight.methods.trajectory.experts.Experts`) writes it, stage 2
(:class:`~ddlight.methods.trajectory.core.TrajectoryMatching`: MTT, DATM, PAD) reads it. The buffer
itself is the checkpoint of stage 1: an expert is written only when complete, the trajectory before the
manifest entry that lists it, so an interrupted run leaves either a listed, complete expert or an unlisted
file that the rerun overwrites.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddlight.artifacts import BUFFER_MANIFEST
from ddlight.data.zca import tensor_sha256 as tensor_digest  # noqa: F401 - re-exported for experts
from ddlight.utils.io import atomic_json_dump, atomic_torch_save
from ddlight.utils.jsonable import jsonable

FORMAT_VERSION = 1
MANIFEST = BUFFER_MANIFEST
EL2N_FILE = "el2n.pt"


def expert_filename(index: int) -> str:
    return f"expert_{index:03d}.pt"


class Stream(IntEnum):
    """Tags of the buffer's random streams, mixed with the run seed and indices by ``mix_seed``.

    Every stream (an expert's initialisation, its batch order, its augmentation) has its own seed derived
    from the run seed and the expert index, so expert ``i`` is the same whether it is trained first, after
    a restart, or alone. The values are part of the buffer's reproducibility: never renumber them.
    """

    EXPERT_INIT = 101
    BATCHES = 102
    DSA = 103
    EL2N_INIT = 111
    EL2N_BATCHES = 112
    EL2N_DSA = 113


def parameter_layout(net: nn.Module) -> tuple[list[str], list[torch.Size], list[int]]:
    """Names, shapes and sizes of ``net``'s parameters in ``named_parameters`` order: the layout of a
    trajectory row (:func:`flatten_parameters`)."""
    params = list(net.named_parameters())
    return [n for n, _ in params], [p.shape for _, p in params], [p.numel() for _, p in params]


def unflatten_parameters(
    flat: torch.Tensor, names: Sequence[str], shapes: Sequence[torch.Size], sizes: Sequence[int]
) -> dict[str, torch.Tensor]:
    """A flat vector in :func:`parameter_layout` order -> ``{name: view}``, differentiable w.r.t. ``flat``
    (the student's parameters in ``torch.func.functional_call``)."""
    return {n: c.view(s) for n, c, s in zip(names, flat.split(sizes), shapes, strict=True)}


def flatten_parameters(net: nn.Module) -> torch.Tensor:
    """All parameters (not buffers) in ``named_parameters`` order as one float32 CPU vector."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).to("cpu", torch.float32)


class ExpertBuffer:
    """Read side of an expert buffer directory (what the PAD distiller consumes).

    ``manifest.json`` describes the run (parameter layout, network, data, recipe) and lists the completed
    experts; ``expert_XXX.pt`` holds one expert's float32 ``(epochs + 1, P)`` trajectory, row 0 the
    initialisation and row ``e`` the parameters after epoch ``e``, each row the parameters flattened in
    ``named_parameters`` order.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"no expert buffer at {self.root.resolve()} ({MANIFEST} missing)")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: buffer format_version {version}, this code reads {FORMAT_VERSION}")
        self.param_names: list[str] = list(self.manifest["param_names"])
        self.param_shapes: list[tuple[int, ...]] = [tuple(s) for s in self.manifest["param_shapes"]]
        self.param_sizes = [int(torch.Size(s).numel()) for s in self.param_shapes]
        self.num_params = sum(self.param_sizes)
        self.epochs = int(self.manifest["epochs"])

    @property
    def completed(self) -> list[int]:
        return [int(c["index"]) for c in self.manifest["completed"]]

    @property
    def num_completed(self) -> int:
        return len(self.manifest["completed"])

    def load_expert(self, index: int, mmap: bool = False) -> torch.Tensor:
        """Expert ``index``'s ``(epochs + 1, P)`` trajectory.

        ``mmap=True`` maps the file instead of reading it: a distiller that needs two rows per step of a
        100-epoch trajectory then reads two rows' pages, not the whole file.
        """
        if index not in self.completed:
            raise KeyError(f"expert {index} is not in {self.root / MANIFEST} (completed: {self.completed})")
        traj = torch.load(
            self.root / expert_filename(index), map_location="cpu", weights_only=True, mmap=mmap
        )
        want = (self.epochs + 1, self.num_params)
        if tuple(traj.shape) != want:
            raise ValueError(f"{expert_filename(index)} has shape {tuple(traj.shape)}, manifest says {want}")
        return traj

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """One flattened row -> ``{name: tensor}`` views, ready for ``load_state_dict(strict=False)`` or
        ``torch.func.functional_call``."""
        if flat.shape[-1] != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters, got {flat.shape[-1]}")
        chunks = flat.split(self.param_sizes, dim=-1)
        return {
            name: c.reshape(*flat.shape[:-1], *shape)
            for name, c, shape in zip(self.param_names, chunks, self.param_shapes, strict=True)
        }

    def load_el2n(self) -> torch.Tensor:
        return torch.load(self.root / EL2N_FILE, map_location="cpu", weights_only=True)["scores"]


def open_completed(root: Path, hint: str) -> ExpertBuffer:
    """The buffer at ``root`` for distillation: it must exist and hold at least one complete expert;
    ``hint`` (how to create one) ends either error."""
    try:
        buf = ExpertBuffer(root)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"PAD needs an expert buffer: {err}; {hint}") from err
    if buf.num_completed == 0:
        raise FileNotFoundError(
            f"PAD needs an expert buffer: {root.resolve()} has no completed expert yet; {hint}"
        )
    return buf


def check_fits(
    buf: ExpertBuffer,
    names: Sequence[str],
    shapes: Sequence[Sequence[int]],
    max_start_epoch: int,
    expert_epochs: int,
    label_expert_epoch: int,
) -> None:
    """Refuse a student whose parameters are not the experts', or a start-epoch window (and label epoch)
    the trajectories are too short for: either would only fail, or silently mismatch, mid-distillation."""
    mine = list(zip(names, [tuple(s) for s in shapes], strict=True))
    theirs = list(zip(buf.param_names, buf.param_shapes, strict=True))
    if mine != theirs:
        diff = next(
            (f"{a} vs {b}" for a, b in zip(mine, theirs, strict=False) if a != b),
            f"{len(mine)} vs {len(theirs)} tensors",
        )
        raise ValueError(
            f"PAD's net does not match the experts in {buf.root} (student vs buffer: {diff}); use the net of "
            f"the buffer's manifest: {buf.manifest.get('net')}"
        )
    last_start = max_start_epoch - 1
    if last_start + expert_epochs > buf.epochs:
        raise ValueError(
            f"start epochs up to {last_start} plus expert_epochs {expert_epochs} need trajectories of "
            f"{last_start + expert_epochs} epochs; {buf.root} has {buf.epochs}. Lower max_start_epoch to "
            f"at most {buf.epochs - expert_epochs + 1} or expert_epochs."
        )
    if not -(buf.epochs + 1) <= label_expert_epoch <= buf.epochs:
        raise ValueError(f"label_expert_epoch {label_expert_epoch} outside 0..{buf.epochs} (or -1)")


def check_same_data(buf: ExpertBuffer, name: str, zca: dict[str, Any]) -> None:
    """Refuse experts trained on another dataset or another whitening: matching trajectories of whitened
    images with an unwhitened set (or the reverse) runs without error and distils nothing."""
    data = buf.manifest.get("dataset", {})
    have, want = (data.get("name"), jsonable(data.get("zca", {}))), (name, jsonable(zca))
    if have[0] is not None and have != want:
        raise ValueError(
            f"the experts in {buf.root} were trained on {have[0]!r} with ZCA {have[1] or 'off'}, but PAD's "
            f"data module is {want[0]!r} with ZCA {want[1] or 'off'}; set data.init_args.zca (and zca_reg) "
            "as in the experts' run, or train experts for this data"
        )


# ------------------------------------------------------------------------------------------ write side


def manifest_differences(saved: Any, now: Any, key: str = "") -> list[str]:
    """``"recipe.lr: buffer 0.01, now 0.1"`` for every leaf that differs, so the error names the cause."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now)):
            out += manifest_differences(saved.get(k), now.get(k), f"{key}.{k}" if key else k)
        return out
    if saved == now:
        return []
    short = [v if len(repr(v)) <= 60 else "..." for v in (saved, now)]
    return [f"{key}: buffer {short[0]!r}, now {short[1]!r}"]


def open_manifest(root: Path, identity: dict[str, Any], num_experts: int, el2n: bool) -> dict[str, Any]:
    """The manifest of ``root``, created from ``identity`` or checked against it, and (re)written.

    Experts of different recipes must never share a buffer: PAD would mix trajectories that no single
    run produces.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST
    # Reduced to what it reads back as from JSON, so a fresh identity compares equal to a stored one.
    ident = jsonable(identity)
    if path.exists():
        manifest = json.loads(path.read_text())
        diff = manifest_differences({k: manifest.get(k) for k in ident}, ident)
        if diff:
            raise ValueError(
                f"{path} was written by a different run ({'; '.join(diff)}); experts of different "
                "recipes must not share a buffer - choose another buffer_dir or delete this one"
            )
    else:
        manifest = {**ident, "completed": []}
    manifest["num_experts"] = num_experts
    manifest["el2n_file"] = EL2N_FILE if el2n else None
    atomic_json_dump(manifest, path)
    return manifest


def record_expert(
    root: Path, manifest: dict[str, Any], expert: int, traj: torch.Tensor, test_acc: float, seconds: float
) -> None:
    """Write ``expert``'s trajectory, then list it in ``manifest`` (updated in place) on disk."""
    # The trajectory first, then the manifest: a crash in between leaves an unlisted file that the
    # rerun overwrites, never a listed expert without its file.
    atomic_torch_save(traj.clone(), root / expert_filename(expert))
    entry = {
        "index": expert,
        "file": expert_filename(expert),
        "test_acc": test_acc,
        "seconds": round(seconds, 2),
    }
    completed = [c for c in manifest["completed"] if int(c["index"]) != expert] + [entry]
    manifest["completed"] = sorted(completed, key=lambda c: int(c["index"]))
    atomic_json_dump(manifest, root / MANIFEST)
