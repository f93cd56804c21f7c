"""DSA: VICO-UoE/DatasetCondensation ``main.py`` (``--method DSA``, the released strategy
``color_crop_cutout_flip_scale_rotate``) against :class:`ddlight.methods.DSA`, with the same DSA draws
injected into both.

The comparison is :mod:`benchmarks.parity.dc`'s (their outer-loop block sliced from ``main.py`` and
executed; the same state, real batches and rows), with augmentation on. Their draws come from their own
code: the Siamese step seeds ``DiffAugment`` per class (``seed = int(time.time() * 1000) % 100000``,
main.py:186; here the harness hands it chosen seeds that make the 15 per-class draws cycle through all six
ops), the inner loop's ``epoch`` draws from the global RNG (seeded once). A spy around their
``DiffAugment`` records each call; :func:`reference_draw` replays the same random numbers from the same
seed / generator state and writes them as ddlight's :class:`~ddlight.ops.augment.DSAParams`, which are
then injected into ddlight: ``siamese_params`` returns the per-class draw, and the inner loop's
augmentation gets each image's draw (found by the image, since the two loaders shuffle differently).
That the translation is right is checked here too: ddlight's ``DSA.apply`` of the translated draw against
their ``DiffAugment`` output, for every recorded call (the ops themselves are proven op by op by
the DSA-ops fixture, ``docs/parity.md``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.parity.dc import compare_and_write, make_inputs, ours, theirs
from ddlight.methods import DSA
from ddlight.ops import augment

STRATEGY = augment.FIELD_STRATEGY  # released, flip included (their README's DSA runs)
INNER_SEED = 7
# ParamDiffAug() defaults (utils.py:474): ddlight's DSA defaults are the same constants
RATIO_SCALE, RATIO_ROTATE, RATIO_CROP, RATIO_CUTOUT, PROB_FLIP = 1.2, 15.0, 0.125, 0.5, 0.5
BRIGHTNESS, SATURATION, CONTRAST = 1.0, 2.0, 0.5


def reference_draw(
    strategy: str, n: int, size: tuple[int, int], seed: int = -1, state: torch.Tensor | None = None
) -> augment.DSAParams:
    """The random numbers their ``DiffAugment(x, strategy, seed, param)`` (``aug_mode='S'``) draws for a
    batch of ``n`` images, as ddlight's per-sample parameters (``n`` rows; Siamese: row 0 for all, as
    their ``theta[:] = theta[0]`` etc.). ``seed >= 0``: their Siamese re-seeding (``set_seed_DiffAug``
    before every draw, seed, seed+1, ...); ``seed == -1``: the global stream from ``state``."""
    ops = strategy.split("_")
    gen = torch.Generator()
    if seed == -1:
        gen.set_state(state)
    counter = [seed]

    def next_gen() -> torch.Generator:
        if seed != -1:
            gen.manual_seed(counter[0])
            counter[0] += 1
        return gen

    h, w = size
    op_index = int(torch.randint(0, len(ops), size=(1,), generator=next_gen()).item())
    op = ops[op_index]
    one, zero = torch.ones(n), torch.zeros(n)
    fields: dict[str, torch.Tensor] = {
        "op": torch.full((n,), op_index, dtype=torch.long),
        "brightness": zero, "saturation": one, "contrast": one, "scale": torch.ones(n, 2),
        "angle": zero, "flip": torch.zeros(n, dtype=torch.bool), "crop": torch.full((n, 2), 0.5),
        "cutout": torch.full((n, 2), 0.5),
    }  # fmt: skip
    if op == "color":  # rand_brightness, rand_saturation, rand_contrast (utils.py:565-595)
        fields["brightness"] = (torch.rand(n, generator=next_gen()) - 0.5) * BRIGHTNESS
        fields["saturation"] = torch.rand(n, generator=next_gen()) * SATURATION
        fields["contrast"] = torch.rand(n, generator=next_gen()) + CONTRAST
    elif op == "scale":  # rand_scale: sx then sy (utils.py:524)
        r = RATIO_SCALE
        sx = torch.rand(n, generator=next_gen()) * (r - 1.0 / r) + 1.0 / r
        sy = torch.rand(n, generator=next_gen()) * (r - 1.0 / r) + 1.0 / r
        fields["scale"] = torch.stack([sx, sy], -1)
    elif op == "rotate":  # rand_rotate (utils.py:542), their expression and rounding
        fields["angle"] = (
            (torch.rand(n, generator=next_gen()) - 0.5) * 2 * RATIO_ROTATE / 180 * float(math.pi)
        )
    elif op == "flip":  # rand_flip (utils.py:556)
        fields["flip"] = torch.rand(n, generator=next_gen()) < PROB_FLIP
    elif op == "crop":  # rand_crop: integer shifts in [-pad, pad]; ddlight stores a uniform per shift
        pads = (int(h * RATIO_CROP + 0.5), int(w * RATIO_CROP + 0.5))
        shifts = [torch.randint(-p, p + 1, size=(n,), generator=next_gen()) for p in pads]
        fields["crop"] = torch.stack(
            [(s + p + 0.5) / (2 * p + 1) for s, p in zip(shifts, pads, strict=True)], -1
        )
    elif op == "cutout":  # rand_cutout: hole centres in [0, size - side % 2]
        sides = (int(h * RATIO_CUTOUT + 0.5), int(w * RATIO_CUTOUT + 0.5))
        highs = (h - sides[0] % 2, w - sides[1] % 2)
        centres = [torch.randint(0, hi + 1, size=(n,), generator=next_gen()) for hi in highs]
        fields["cutout"] = torch.stack(
            [(c + 0.5) / (hi + 1) for c, hi in zip(centres, highs, strict=True)], -1
        )
    params = augment.DSAParams(**fields)
    return params.select(torch.zeros(n, dtype=torch.long)) if seed != -1 else params


def as_dict(params: augment.DSAParams) -> dict[str, torch.Tensor]:
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def rows_of(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index in ``pool`` of each image of ``x`` (exact copies: a loader's batch of the set)."""
    d = torch.cdist(x.flatten(1).double(), pool.flatten(1).double())
    idx = d.argmin(1)
    if d.gather(1, idx[:, None]).max() > 0:
        raise AssertionError("a batch image is not an exact copy of a synthetic image")
    return idx


class InjectedDSA:
    """ddlight's DSA op with the draws fixed: the inner loop's ``dsa(x, ...)`` gets, per image of the set,
    the parameters the reference drew for it in that epoch (one entry per epoch, in order)."""

    def __init__(
        self, op: augment.DSA, per_epoch: Iterator[dict[str, torch.Tensor]], images: Callable
    ) -> None:
        self.op, self.per_epoch, self.images = op, per_epoch, images

    def __getattr__(self, name: str) -> Any:
        return getattr(self.op, name)

    def __call__(self, x: torch.Tensor, generator: Any = None, group: Any = None, *, share_op: bool = False):
        params = augment.DSAParams(**next(self.per_epoch))
        return self.op.apply(x, params.select(rows_of(x, self.images())))


def injector(draws: dict[str, list[dict[str, torch.Tensor]]]) -> Callable[[DSA, int], None]:
    per_epoch = iter(draws["inner"])

    def inject(model: DSA, ol: int) -> None:
        siamese = augment.DSAParams(**draws["siamese"][ol])
        model.siamese_params = lambda: siamese
        if not isinstance(model.dsa, InjectedDSA):
            model.dsa = InjectedDSA(model.dsa, per_epoch, lambda: model.images.detach())

    return inject


def ours_injected(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """ddlight's DSA outer iteration with the fixture's recorded draws injected (the fixture test's call)."""
    return ours(inputs, DSA, injector(inputs["draws"]))


def cycling_seeds(count: int, strategy: str = STRATEGY) -> list[int]:
    """Siamese seeds whose op (their first draw) cycles through the strategy's ops."""
    ops, seeds, s = strategy.split("_"), [], 0
    while len(seeds) < count:
        if int(torch.randint(0, len(ops), (1,), generator=torch.Generator().manual_seed(s)).item()) == (
            len(seeds) % len(ops)
        ):
            seeds.append(s)
        s += 1
    return seeds


def run(official: Path, commit: str, out: Path | None) -> bool:
    from benchmarks.parity.fixtures import difference

    inputs = make_inputs(seed=1, strategy=STRATEGY)
    cfg = inputs["config"]
    k = cfg["classes"]
    seeds = cycling_seeds(cfg["outer_loop"] * k)
    calls: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    datasets: list[torch.Tensor] = []

    def spy(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def diff_augment(x, strategy="", seed=-1, param=None):  # noqa: ANN001, ANN202 (their signature)
            state = torch.get_rng_state()
            y = original(x, strategy, seed=seed, param=param)
            calls.append((seed, x.detach().clone(), y.detach().clone(), state))
            return y

        return diff_augment

    ref = theirs(official, inputs, seeds=seeds, inner_seed=INNER_SEED, diff_augment=spy, datasets=datasets)
    size = tuple(inputs["images"].shape[-2:])
    siamese_calls = [c for c in calls if c[0] != -1]
    inner_calls = [c for c in calls if c[0] == -1]
    assert len(siamese_calls) == 2 * k * cfg["outer_loop"], len(siamese_calls)
    assert len(inner_calls) == cfg["inner_loop"] * (cfg["outer_loop"] - 1), len(inner_calls)
    # per update: class c's real call then its syn call, one seed each
    siamese = []
    for ol in range(cfg["outer_loop"]):
        rows = [reference_draw(STRATEGY, 1, size, seed=seeds[ol * k + c]) for c in range(k)]
        siamese.append({f: torch.cat([as_dict(r)[f] for r in rows]) for f in as_dict(rows[0])})
    inner = []
    for i, (_, x, _, state) in enumerate(inner_calls):
        pool = datasets[i // cfg["inner_loop"]]
        drawn = reference_draw(STRATEGY, x.shape[0], size, state=state)
        order = rows_of(x, pool)  # their batch row r is image order[r] of the set
        by_image = torch.empty_like(order)
        by_image[order] = torch.arange(order.numel())
        inner.append(as_dict(drawn.select(by_image)))
    inputs["draws"] = {"seeds": seeds, "inner_seed": INNER_SEED, "siamese": siamese, "inner": inner}

    # the translation itself: ddlight's apply of each translated draw against their augmented batch
    op = augment.DSA(STRATEGY)
    worst = (0.0, 0.0)
    for seed, x, y, state in calls:
        drawn = reference_draw(STRATEGY, x.shape[0], size, seed=seed, state=None if seed != -1 else state)
        worst = max(worst, difference(op.apply(x, drawn), y), key=lambda t: t[1])
    print(f"dsa: draw translation, ddlight DSA.apply vs their DiffAugment over {len(calls)} calls: "
          f"abs {worst[0]:.3e} rel {worst[1]:.3e}")  # fmt: skip
    ops_seen = sorted({STRATEGY.split("_")[int(i)] for d in siamese + inner for i in d["op"].unique()})
    print(f"dsa: ops drawn (Siamese + inner loop): {', '.join(ops_seen)}")

    mine = ours_injected(inputs)
    note = (
        f"DSA {STRATEGY}, the reference's draws injected (Siamese seeds cycling through the ops, inner "
        f"loop from torch.manual_seed({INNER_SEED})); otherwise as the dc fixture"
    )
    return compare_and_write("dsa", official, commit, inputs, mine, ref, out, note)
