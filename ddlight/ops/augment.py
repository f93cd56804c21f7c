"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen, ICML 2021), vectorised.

Semantics follow ``DiffAugment`` of VICO-UoE/DatasetCondensation in its default ``aug_mode='S'``: each
draw picks ONE op of the strategy uniformly at random and only that op acts (``color`` is brightness,
then saturation, then contrast). Constants, ranges and formulas are the reference's.

"Siamese" is expressed through groups instead of a re-seeded global RNG: ``sample`` draws one
transform per group, and ``apply`` gives every sample of group ``g`` group ``g``'s transform. DM /
DataDAM pass the class label as the group for both the real and the synthetic batch, so the two sides of
the matching loss see the same augmentation of each class, in one call for all classes instead of the
reference's per-class loop with a shared seed.

All ops are differentiable w.r.t. the images (the synthetic set is learned through them): colour is
affine in the pixels, the geometric ops are one bilinear ``grid_sample``, cutout is a multiplicative mask.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ALLOWED_OPS: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
# The field's DSA strategy (DC/DSA/DM/MTT/DataDAM code), and the default of every stage: "auto" = that
# strategy, without flip where the data module says mirroring changes the class (see strategy_for).
FIELD_STRATEGY = "color_crop_cutout_flip_scale_rotate"
AUTO = "auto"
DEFAULT_STRATEGY = AUTO
_GEOMETRIC = ("scale", "rotate", "flip", "crop")
# Uniforms per group: brightness, saturation, contrast, scale (x, y), rotate, flip, crop (row, col),
# cutout (row, col); DSA.from_uniforms maps them to a transform.
UNIFORMS = 11


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """'_'-joined op names -> tuple of ops; 'none' / '' -> () (identity)."""
    s = strategy.strip()
    if s.lower() in ("", "none"):
        return ()
    ops = tuple(s.split("_"))
    for tok in ops:
        if tok not in ALLOWED_OPS:
            raise ValueError(
                f"unknown DSA op {tok!r} in strategy {strategy!r}; allowed ops: {', '.join(ALLOWED_OPS)} "
                "(joined by '_'), or 'none'"
            )
    dup = sorted({t for t in ops if ops.count(t) > 1})
    if dup:
        # The reference would silently give a repeated op a double share of the draws; that is almost
        # certainly a typo, not a wish.
        raise ValueError(f"DSA strategy {strategy!r} repeats op(s) {dup}")
    return ops


def strategy_for(strategy: str, flip_invariant: bool = True) -> str:
    """The DSA strategy a stage applies on a dataset whose data module declares ``flip_invariant``.

    ``"auto"`` (every stage's default) is the field's strategy, without 'flip' where a mirrored image is
    not an image of its class: a data module says so (``RealDataModule.flip_invariant``; MNIST's digits
    say no, since a mirrored 2 or 5 looks like the other and a mirrored 3 or 7 is no digit, so flipping
    would teach label noise; Fashion-MNIST's clothes, SVHN and natural images say yes). Any other strategy
    is applied exactly as written: the reference code (DC/DM/DataDAM) flips every dataset, MNIST included,
    and ``color_crop_cutout_flip_scale_rotate`` reproduces that protocol. The applied strategy, not
    "auto", is what exported sets and results record.
    """
    if strategy.strip().lower() == AUTO:
        ops = parse_strategy(FIELD_STRATEGY)
        if not flip_invariant:
            ops = tuple(op for op in ops if op != "flip")
    else:
        ops = parse_strategy(strategy)
    return "_".join(ops) if ops else "none"


@dataclass(frozen=True)
class DSAParams:
    """One transform per group; every tensor's first dimension is the group.

    Draws are kept for every op, not only the chosen one, so that the random stream consumed does not
    depend on which op won; ``op`` alone decides what acts, everything else of that group is identity.
    Crop and cutout are stored as uniforms in [0, 1) and turned into pixels at ``apply`` time because the
    pixel ranges depend on the image size, which ``sample`` does not know.
    """

    op: torch.Tensor  # (G,) long: index into DSA.ops; -1 = identity
    brightness: torch.Tensor  # (G,) additive shift
    saturation: torch.Tensor  # (G,) factor on the deviation from the channel mean
    contrast: torch.Tensor  # (G,) factor on the deviation from the image mean
    scale: torch.Tensor  # (G, 2) (sx, sy): factors on the sampling grid's (x, y)
    angle: torch.Tensor  # (G,) radians, positive = anticlockwise
    flip: torch.Tensor  # (G,) bool: mirror left-right
    crop: torch.Tensor  # (G, 2) uniforms -> (row, col) integer shift
    cutout: torch.Tensor  # (G, 2) uniforms -> (row, col) of the hole's centre

    @property
    def num_groups(self) -> int:
        return self.op.shape[0]

    def to(self, device: torch.device | str) -> DSAParams:
        return DSAParams(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def select(self, index: torch.Tensor) -> DSAParams:
        """Rows ``index`` of every field (group -> per-sample parameters)."""
        return DSAParams(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


class DSA:
    """DSA with the reference's ``ParamDiffAug`` constants as defaults.

    Usage: ``params = dsa.sample(num_classes, gen)``; ``dsa.apply(x_real, params, y_real)`` and
    ``dsa.apply(x_syn, params, y_syn)`` augment both sides identically per class. ``dsa(x)`` gives every
    sample its own draw (training on the synthetic set).
    """

    def __init__(
        self,
        strategy: str = FIELD_STRATEGY,
        prob_flip: float = 0.5,
        ratio_scale: float = 1.2,
        ratio_rotate: float = 15.0,
        ratio_crop_pad: float = 0.125,
        ratio_cutout: float = 0.5,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
    ) -> None:
        if not 0.0 <= prob_flip <= 1.0:
            raise ValueError(f"prob_flip must be in [0, 1], got {prob_flip}")
        if ratio_scale < 1.0:
            raise ValueError(f"ratio_scale must be >= 1 (range is [1/r, r]), got {ratio_scale}")
        self.strategy = strategy
        self.ops = parse_strategy(strategy)
        self.prob_flip = float(prob_flip)
        self.ratio_scale = float(ratio_scale)
        self.ratio_rotate = float(ratio_rotate)
        self.ratio_crop_pad = float(ratio_crop_pad)
        self.ratio_cutout = float(ratio_cutout)
        self.brightness = float(brightness)
        self.saturation = float(saturation)
        self.contrast = float(contrast)

    def __repr__(self) -> str:
        return (
            f"DSA(strategy={self.strategy!r}, prob_flip={self.prob_flip}, ratio_scale={self.ratio_scale}, "
            f"ratio_rotate={self.ratio_rotate}, ratio_crop_pad={self.ratio_crop_pad}, "
            f"ratio_cutout={self.ratio_cutout}, brightness={self.brightness}, "
            f"saturation={self.saturation}, contrast={self.contrast})"
        )

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        num_groups: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        *,
        share_op: bool = False,
    ) -> DSAParams:
        """Draw one op and its parameters for each of ``num_groups`` groups.

        ``share_op=True`` draws a single op for all groups (parameters still per group), which is what the
        reference does when called without a seed on a whole batch (evaluation training, MTT).
        """
        if num_groups < 0:
            raise ValueError(f"num_groups must be >= 0, got {num_groups}")
        # A generator only draws on its own device; draw there, then move.
        draw_device = generator.device if generator is not None else torch.device(device or "cpu")
        out_device = torch.device(device) if device is not None else draw_device
        g = num_groups
        if self.ops:
            n_op = 1 if share_op else g
            op = torch.randint(0, len(self.ops), (n_op,), generator=generator, device=draw_device)
            op = op.expand(g).clone() if share_op else op
        else:
            op = torch.full((g,), -1, dtype=torch.long, device=draw_device)
        u = torch.rand(g, UNIFORMS, generator=generator, device=draw_device)
        return self.from_uniforms(op, u).to(out_device)

    def from_uniforms(self, op: torch.Tensor, u: torch.Tensor) -> DSAParams:
        """The transform of each group from its op index ``op`` (G,) and its ``UNIFORMS`` uniforms ``u``
        (G, 11), with the reference's formulas and ``ParamDiffAug`` ranges.

        Separate from :meth:`sample` so that a given draw can be replayed: the parity harness maps the
        reference's own ``torch.rand``/``torch.randint`` draws to these uniforms and checks that both
        implementations then compute the same images (``benchmarks/parity/dsa_ops.py``).
        """
        if u.dim() != 2 or u.shape[1] != UNIFORMS or op.shape != u.shape[:1]:
            raise ValueError(
                f"need op (G,) and u (G, {UNIFORMS}), got {tuple(op.shape)} and {tuple(u.shape)}"
            )
        r = self.ratio_scale
        return DSAParams(
            op=op,
            brightness=(u[:, 0] - 0.5) * self.brightness,
            saturation=u[:, 1] * self.saturation,
            contrast=u[:, 2] + self.contrast,
            scale=u[:, 3:5] * (r - 1.0 / r) + 1.0 / r,
            angle=(u[:, 5] - 0.5) * 2.0 * math.radians(self.ratio_rotate),
            flip=u[:, 6] < self.prob_flip,
            crop=u[:, 7:9].contiguous(),
            cutout=u[:, 9:11].contiguous(),
        )

    # ------------------------------------------------------------------ applying

    def _chosen(self, op: torch.Tensor, name: str) -> torch.Tensor | None:
        """Per-sample bool mask of samples whose op is ``name``; None if the strategy lacks it."""
        if name not in self.ops:
            return None
        return op == self.ops.index(name)

    def apply(self, x: torch.Tensor, params: DSAParams, group: torch.Tensor | None = None) -> torch.Tensor:
        """Sample i gets the transform of group ``group[i]`` (of group i when ``group`` is None)."""
        if x.dim() != 4:
            raise ValueError(f"DSA expects (N, C, H, W) images, got shape {tuple(x.shape)}")
        if not self.ops:
            return x
        n, _, h, w = x.shape
        p = params.to(x.device)
        if group is None:
            if p.num_groups != n:
                raise ValueError(f"group=None needs one group per sample: {p.num_groups} groups, {n} samples")
        else:
            if group.shape != (n,):
                raise ValueError(f"group must have shape ({n},), got {tuple(group.shape)}")
            p = p.select(group.to(device=x.device, dtype=torch.long))
        x = self._color(x, p)
        x = self._geometric(x, p)
        return self._cutout(x, p)

    def _color(self, x: torch.Tensor, p: DSAParams) -> torch.Tensor:
        chosen = self._chosen(p.op, "color")
        if chosen is None:
            return x
        n = x.shape[0]
        zero, one = torch.zeros((), device=x.device), torch.ones((), device=x.device)
        b = torch.where(chosen, p.brightness, zero).to(x.dtype).view(n, 1, 1, 1)
        s = torch.where(chosen, p.saturation, one).to(x.dtype).view(n, 1, 1, 1)
        c = torch.where(chosen, p.contrast, one).to(x.dtype).view(n, 1, 1, 1)
        # x*f + m*(1-f) rather than the reference's (x-m)*f + m: equal in exact arithmetic, and with f=1
        # it returns x bit-for-bit, so samples whose op is not colour pass through untouched.
        x = x + b
        x = x * s + x.mean(dim=1, keepdim=True) * (1 - s)
        return x * c + x.mean(dim=(1, 2, 3), keepdim=True) * (1 - c)

    def _crop_shift(self, p: DSAParams, h: int, w: int) -> torch.Tensor:
        """(N, 2) integer (row, col) shift, uniform on [-pad, pad] with pad = int(size*ratio + 0.5)."""
        pad = torch.tensor(
            [int(h * self.ratio_crop_pad + 0.5), int(w * self.ratio_crop_pad + 0.5)], device=p.crop.device
        )
        k = torch.minimum(torch.floor(p.crop * (2 * pad + 1)).long(), 2 * pad)
        return k - pad

    def _geometric(self, x: torch.Tensor, p: DSAParams) -> torch.Tensor:
        masks = {name: self._chosen(p.op, name) for name in _GEOMETRIC}
        if all(m is None for m in masks.values()):
            return x
        n, _, h, w = x.shape
        dev = x.device
        # theta maps output to input coordinates in [-1, 1] (x = column, y = row), as affine_grid wants.
        # Only one op is chosen per sample, so the product below has at most one non-identity factor.
        lin = torch.eye(2, device=dev).expand(n, 2, 2)
        if masks["scale"] is not None:
            sxy = torch.where(masks["scale"][:, None], p.scale, torch.ones((), device=dev))
            lin = torch.diag_embed(sxy) @ lin
        if masks["rotate"] is not None:
            a = torch.where(masks["rotate"], p.angle, torch.zeros((), device=dev))
            cos, sin = torch.cos(a), torch.sin(a)
            rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
            lin = rot @ lin
        if masks["flip"] is not None:
            fx = torch.where(masks["flip"] & p.flip, -1.0, 1.0)
            lin = lin * torch.stack([fx, torch.ones_like(fx)], -1)[:, None, :]
        shift = torch.zeros(n, 2, device=dev)
        if masks["crop"] is not None:
            rc = self._crop_shift(p, h, w).to(torch.float32)
            # Output pixel (r, c) reads input (r + dr, c + dc); one pixel is 2/size in normalised units.
            t = torch.stack([2.0 * rc[:, 1] / w, 2.0 * rc[:, 0] / h], -1)
            shift = torch.where(masks["crop"][:, None], t, shift)
        theta = torch.cat([lin, shift[:, :, None]], dim=2)
        # align_corners=False is what the reference gets from PyTorch's default (it passes none); it also
        # makes a k-pixel shift land exactly on pixel centres and the zero padding enter at the border.
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # Samples left in place (colour/cutout chosen, flip coin said no, zero shift) keep x exactly instead
        # of a resampled copy that is only equal up to rounding.
        moved = (theta != torch.eye(2, 3, device=dev)).flatten(1).any(1)
        return torch.where(moved[:, None, None, None], warped, x)

    def _cutout(self, x: torch.Tensor, p: DSAParams) -> torch.Tensor:
        chosen = self._chosen(p.op, "cutout")
        if chosen is None:
            return x
        _, _, h, w = x.shape
        dev = x.device

        def hole_1d(u: torch.Tensor, size: int) -> torch.Tensor:
            side = int(size * self.ratio_cutout + 0.5)
            # The reference's centre range: [0, size] for an even side, [0, size-1] for an odd one; the
            # hole [centre - side//2, centre - side//2 + side) is then clipped to the image.
            hi = size - side % 2
            centre = torch.minimum(torch.floor(u * (hi + 1)).long(), torch.tensor(hi, device=dev))
            start = (centre - side // 2)[:, None]
            idx = torch.arange(size, device=dev)[None, :]
            return (idx >= start) & (idx < start + side)

        hole = hole_1d(p.cutout[:, 0], h)[:, :, None] & hole_1d(p.cutout[:, 1], w)[:, None, :]
        hole = hole & chosen[:, None, None]
        return x * (~hole).to(x.dtype)[:, None]

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        group: torch.Tensor | None = None,
        *,
        share_op: bool = False,
    ) -> torch.Tensor:
        """Sample and apply: one draw per sample, or per group when ``group`` is given."""
        if not self.ops:
            return x
        # group.max() syncs with the device; callers on a hot path with groups should sample themselves.
        num_groups = x.shape[0] if group is None else int(group.max()) + 1 if group.numel() else 0
        params = self.sample(num_groups, generator, device=x.device, share_op=share_op)
        return self.apply(x, params, group)
