"""DSA ops: ddlight's :class:`~ddlight.ops.augment.DSA` against the reference's ``DiffAugment`` ops
(VICO-UoE/DatasetCondensation ``utils.py``: ``rand_brightness``/``rand_saturation``/``rand_contrast``,
``rand_crop``, ``rand_cutout``, ``rand_flip``, ``rand_scale``, ``rand_rotate``) given the same random draws.

The reference draws inside each op with ``torch.rand``/``torch.randint``. Its module's ``torch`` is
replaced by a :class:`Recorder` that passes every call through and keeps the draws; :func:`to_uniforms`
turns them into the uniforms that :meth:`DSA.from_uniforms` maps to a transform, so ddlight replays the
very draw the reference made. Two cases:

- ``per_sample``: each op alone on a batch, every sample its own draw (``seed=-1``, as the reference's
  evaluation training augments), for a non-square image so that rows and columns cannot be swapped.
- ``siamese``: the whole ``DiffAugment`` with the field's strategy and a seed (how DM and DataDAM call
  it), several seeds: the op choice and the Siamese draw (the batch's first sample's values for all).

The fixture also keeps ``ParamDiffAug``'s constants, which ddlight's ``DSA()`` defaults must equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.parity import fixtures
from benchmarks.parity.official import load
from ddlight.ops.augment import ALLOWED_OPS, DSA, FIELD_STRATEGY, UNIFORMS

REPO = "VICO-UoE/DatasetCondensation"
RTOL, ATOL = 1e-5, 1e-5
# The columns of DSA.from_uniforms' u that each reference op draws, in the order it draws them.
COLUMNS = {
    "color": (0, 1, 2),
    "scale": (3, 4),
    "rotate": (5,),
    "flip": (6,),
    "crop": (7, 8),
    "cutout": (9, 10),
}
SEEDS = (7, 123, 4242, 31337, 99991, 2024, 555, 86420, 1, 77)  # Siamese case: enough to draw every op


class Recorder:
    """Stands in for ``torch`` in the reference's module: every attribute is torch's, and the results of
    ``rand``/``randint`` are kept in order."""

    def __init__(self) -> None:
        self.draws: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def rand(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = torch.rand(*args, **kwargs)
        self.draws.append(out.detach().clone())
        return out

    def randint(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = torch.randint(*args, **kwargs)
        self.draws.append(out.detach().clone())
        return out


def to_uniforms(op: str, draws: list[torch.Tensor], n: int, h: int, w: int, dsa: DSA) -> torch.Tensor:
    """(n, UNIFORMS) uniforms that make ``dsa.from_uniforms`` give the transform the reference drew.

    Continuous draws are the reference's uniforms themselves (its formulas are ddlight's); an integer
    draw k of ``randint(lo, hi)`` becomes the middle of the k-th of the ``hi - lo`` equal bins that
    ddlight's ``floor(u * bins)`` reads. Columns of other ops are 0.5 (never used: only ``op`` acts)."""
    u = torch.full((n, UNIFORMS), 0.5)
    cols = COLUMNS[op]
    if len(draws) != len(cols):
        raise ValueError(f"{op}: expected {len(cols)} draws, the reference made {len(draws)}")
    sizes = (h, w)
    for axis, (col, d) in enumerate(zip(cols, draws, strict=True)):
        d = d.reshape(-1)[:n].double() if d.numel() >= n else d.reshape(-1).double().expand(n)
        if op == "crop":
            pad = int(sizes[axis] * dsa.ratio_crop_pad + 0.5)
            u[:, col] = ((d + pad + 0.5) / (2 * pad + 1)).float()
        elif op == "cutout":
            side = int(sizes[axis] * dsa.ratio_cutout + 0.5)
            u[:, col] = ((d + 0.5) / (sizes[axis] - side % 2 + 1)).float()
        else:
            u[:, col] = d.float()
    return u


def reference_siamese(utils: Any, x: torch.Tensor, seed: int, strategy: str = FIELD_STRATEGY):
    """``DiffAugment(x, strategy, seed)`` as DM/DataDAM call it, and the draw as (op index, (1, 11) u):
    the op choice is the first draw, the op's own draws follow (their first sample's value is used for
    the whole batch)."""
    rec = Recorder()
    utils.torch = rec
    try:
        out = utils.DiffAugment(x, strategy, seed=seed, param=utils.ParamDiffAug())
    finally:
        utils.torch = torch
    ops = strategy.split("_")
    k = int(rec.draws[0].item())
    dsa = DSA(strategy)
    u = to_uniforms(ops[k], [d.reshape(-1)[:1] for d in rec.draws[1:]], 1, x.shape[2], x.shape[3], dsa)
    return out, torch.tensor([dsa.ops.index(ops[k])]), u


def reference_per_sample(utils: Any, x: torch.Tensor, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's op functions for ``op`` on ``x``, each sample its own draw; returns the output and
    the (N, 11) uniforms of the draw."""
    param = utils.ParamDiffAug()
    param.Siamese, param.latestseed = False, -1
    rec = Recorder()
    utils.torch = rec
    try:
        out = x
        for f in utils.AUGMENT_FNS[op]:
            out = f(out, param)
    finally:
        utils.torch = torch
    return out, to_uniforms(op, rec.draws, x.shape[0], x.shape[2], x.shape[3], DSA(op))


def ours_per_sample(x: torch.Tensor, op: str, u: torch.Tensor) -> torch.Tensor:
    dsa = DSA(op)
    return dsa.apply(x, dsa.from_uniforms(torch.zeros(x.shape[0], dtype=torch.long), u))


def ours_siamese(x: torch.Tensor, op: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    dsa = DSA(FIELD_STRATEGY)
    return dsa.apply(x, dsa.from_uniforms(op, u), torch.zeros(x.shape[0], dtype=torch.long))


def run(official: Path, commit: str, out: Path | None) -> bool:
    utils = load(official, "utils")
    gen = torch.Generator().manual_seed(0)
    # 3 channels (saturation mixes them), a non-square size (rows vs columns), odd and even sides (the
    # cutout centre range depends on the side's parity).
    x = torch.randn(8, 3, 10, 7, generator=gen)
    torch.manual_seed(1)
    inputs: dict[str, Any] = {"x": x, "per_sample": {}, "siamese": {}}
    outputs: dict[str, Any] = {"per_sample": {}, "siamese": {}}
    rows = []
    for op in ALLOWED_OPS:
        theirs, u = reference_per_sample(utils, x, op)
        inputs["per_sample"][op], outputs["per_sample"][op] = u, theirs
        rows.append((f"{op} (per sample)", ours_per_sample(x, op, u), theirs))
    xs = x[:2]
    chosen = []
    for seed in SEEDS:
        theirs, op, u = reference_siamese(utils, xs, seed)
        chosen.append(DSA(FIELD_STRATEGY).ops[int(op)])
        inputs["siamese"][seed], outputs["siamese"][seed] = {"op": op, "u": u}, theirs
        rows.append((f"DiffAugment seed {seed} ({chosen[-1]})", ours_siamese(xs, op, u), theirs))
    inputs["param_diff_aug"] = dict(vars(utils.ParamDiffAug()))
    ok = fixtures.print_rows("dsa_ops", rows, RTOL)
    missing = set(ALLOWED_OPS) - set(chosen)
    if missing:
        print(f"  note: the Siamese seeds drew no {sorted(missing)} (covered per sample)")
    if out is not None:
        man = fixtures.manifest(
            REPO,
            commit,
            "utils.py",
            "DiffAugment, rand_* (AUGMENT_FNS), ParamDiffAug",
            RTOL,
            ATOL,
            "per_sample: each op alone, one draw per sample (seed -1); siamese: DiffAugment with the field's "
            "strategy and a seed. u: the draws as DSA.from_uniforms uniforms.",
        )
        print("  wrote", fixtures.write("dsa_ops", man, inputs, outputs, out))
    return ok
