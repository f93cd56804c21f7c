"""DSA: each op against a hand computation, Siamese sharing through groups, differentiability."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from ddlight.ops.augment import ALLOWED_OPS, DSA, DSAParams, parse_strategy, strategy_for

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GEOMETRIC_AND_CUTOUT = "crop_cutout_flip_scale_rotate"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hand_params(dsa: DSA, op: str, g: int = 1, **fields: object) -> DSAParams:
    """Identity values everywhere, op ``op`` chosen, then ``fields`` overridden."""
    base = DSAParams(
        op=torch.full((g,), dsa.ops.index(op), dtype=torch.long),
        brightness=torch.zeros(g),
        saturation=torch.ones(g),
        contrast=torch.ones(g),
        scale=torch.ones(g, 2),
        angle=torch.zeros(g),
        flip=torch.zeros(g, dtype=torch.bool),
        crop=torch.full((g, 2), 0.5),
        cutout=torch.full((g, 2), 0.5),
    )
    return dataclasses.replace(base, **{k: torch.as_tensor(v) for k, v in fields.items()})


def shifted(x: torch.Tensor, dr: int, dc: int) -> torch.Tensor:
    """out[r, c] = x[r + dr, c + dc], zero outside the image."""
    h, w = x.shape[-2:]
    p = max(abs(dr), abs(dc))
    xp = F.pad(x, [p, p, p, p])
    return xp[..., p + dr : p + dr + h, p + dc : p + dc + w]


# ---------------------------------------------------------------- generic properties


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_kept(device: str, dtype: torch.dtype) -> None:
    x = torch.randn(6, 3, 12, 10, dtype=dtype, device=device)
    out = DSA()(x, gen())  # CPU generator, CUDA images: params must follow the images
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("strategy", ["none", "None", ""])
def test_none_is_identity(strategy: str) -> None:
    dsa = DSA(strategy)
    assert dsa.ops == ()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(dsa(x, gen()), x)
    assert torch.equal(dsa.apply(x, dsa.sample(4, gen())), x)


def test_geometric_ops_are_linear_and_shared_within_group() -> None:
    dsa = DSA(GEOMETRIC_AND_CUTOUT)
    params = dsa.sample(4, gen(1))
    group = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    x = torch.randn(8, 3, 16, 16)
    out1 = dsa.apply(x, params, group)
    out2 = dsa.apply(2 * x, params, group)
    torch.testing.assert_close(out2, 2 * out1, atol=1e-5, rtol=0)


def test_siamese_real_and_synthetic_get_same_transform() -> None:
    # DM/DataDAM: real and synthetic batches of different sizes, the class label is the group.
    dsa = DSA()
    params = dsa.sample(3, gen(2))
    img = torch.randn(3, 3, 16, 16)
    real = img.repeat_interleave(4, dim=0)  # 4 "real" images per class
    syn = img.clone()  # 1 "synthetic" image per class
    y_real = torch.arange(3).repeat_interleave(4)
    y_syn = torch.arange(3)
    out_real = dsa.apply(real, params, y_real)
    out_syn = dsa.apply(syn, params, y_syn)
    torch.testing.assert_close(out_real, out_syn.repeat_interleave(4, dim=0), atol=1e-6, rtol=0)


def test_single_group_transforms_whole_batch_alike() -> None:
    # The reference's seeded "batchmode": one draw for every image of the call.
    dsa = DSA()
    x = torch.randn(1, 3, 16, 16).expand(5, -1, -1, -1)
    for seed in range(10):
        params = dsa.sample(1, gen(seed))
        out = dsa.apply(x, params, torch.zeros(5, dtype=torch.long))
        assert torch.equal(out, out[:1].expand_as(out))


def test_different_groups_get_different_params() -> None:
    dsa = DSA("rotate")
    x = torch.randn(1, 3, 16, 16).expand(8, -1, -1, -1)
    out = dsa.apply(x, dsa.sample(8, gen(3)))
    flat = out.flatten(1)
    dist = torch.cdist(flat, flat)
    assert (dist + torch.eye(8) > 1e-3).all()

    dsa = DSA()
    params = dsa.sample(64, gen(4))
    assert len(set(params.op.tolist())) == len(dsa.ops)
    assert params.angle.unique().numel() == 64


def test_share_op_draws_one_op_for_all_groups() -> None:
    dsa = DSA()
    for seed in range(5):
        params = dsa.sample(32, gen(seed), share_op=True)
        assert params.op.unique().numel() == 1
        assert params.scale.unique().numel() == 64  # parameters stay per group


@pytest.mark.parametrize("strategy", [*ALLOWED_OPS, "color_crop_cutout_flip_scale_rotate"])
def test_gradient_reaches_the_images(strategy: str) -> None:
    dsa = DSA(strategy, prob_flip=1.0)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = dsa(x, gen(5))
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().flatten(1).sum(1) > 0).all()


def test_sample_ranges_match_reference_constants() -> None:
    dsa = DSA()
    p = dsa.sample(2000, gen(6))
    assert p.op.min() == 0 and p.op.max() == len(dsa.ops) - 1
    counts = torch.bincount(p.op, minlength=6).float()
    assert (counts / 2000 - 1 / 6).abs().max() < 0.04
    assert p.brightness.min() >= -0.5 and p.brightness.max() < 0.5
    assert p.saturation.min() >= 0.0 and p.saturation.max() < 2.0
    assert p.contrast.min() >= 0.5 and p.contrast.max() < 1.5
    assert p.scale.min() >= 1 / 1.2 - 1e-6 and p.scale.max() <= 1.2 + 1e-6
    assert p.angle.abs().max() <= math.radians(15) + 1e-6
    assert abs(p.flip.float().mean().item() - 0.5) < 0.05


def test_seeded_generator_is_reproducible() -> None:
    dsa = DSA()
    x = torch.randn(16, 3, 16, 16)
    a, b = dsa(x, gen(7)), dsa(x, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, dsa(x, gen(8)))
    pa, pb = dsa.sample(5, gen(9)), dsa.sample(5, gen(9))
    for f in dataclasses.fields(DSAParams):
        assert torch.equal(getattr(pa, f.name), getattr(pb, f.name))


# ---------------------------------------------------------------- single ops


def test_flip() -> None:
    x = torch.randn(4, 3, 9, 12)
    torch.testing.assert_close(DSA("flip", prob_flip=1.0)(x, gen()), x.flip(-1), atol=1e-5, rtol=0)
    assert torch.equal(DSA("flip", prob_flip=0.0)(x, gen()), x)


def test_crop_hand_params_shift_by_integer_pixels() -> None:
    dsa = DSA("crop")
    x = torch.randn(1, 2, 16, 16)  # pad = int(16 * 0.125 + 0.5) = 2 -> shifts in [-2, 2]
    for dr, dc in [(0, 0), (2, -1), (-2, 2), (1, 0), (0, -2)]:
        u = torch.tensor([[(dr + 2.5) / 5, (dc + 2.5) / 5]])
        out = dsa.apply(x, hand_params(dsa, "crop", crop=u))
        torch.testing.assert_close(out, shifted(x, dr, dc), atol=1e-5, rtol=0)


def test_crop_random_draws_are_zero_padded_integer_shifts() -> None:
    dsa = DSA("crop")
    x = torch.randn(1, 2, 16, 16).expand(64, -1, -1, -1)
    out = dsa(x, gen(10))
    candidates = {(dr, dc): shifted(x[0], dr, dc) for dr in range(-2, 3) for dc in range(-2, 3)}
    seen = set()
    for o in out:
        match = [k for k, v in candidates.items() if torch.allclose(o, v, atol=1e-5)]
        assert len(match) == 1
        seen.add(match[0])
    rows, cols = zip(*seen, strict=True)
    assert min(rows) == -2 and max(rows) == 2 and min(cols) == -2 and max(cols) == 2


@pytest.mark.parametrize(
    ("size", "centre", "rows"),
    [
        (8, 0, (0, 2)),  # side int(8*0.5+0.5) = 4, centre range [0, 8]; hole [c-2, c+2) clipped
        (8, 4, (2, 6)),
        (8, 8, (6, 8)),
        (10, 0, (0, 3)),  # side 5 (odd), centre range [0, 9]; hole [c-2, c+3) clipped
        (10, 9, (7, 10)),
        (10, 5, (3, 8)),
    ],
)
def test_cutout_hand_params(size: int, centre: int, rows: tuple[int, int]) -> None:
    dsa = DSA("cutout")
    n_centres = size + 1 - int(size * 0.5 + 0.5) % 2
    u = (centre + 0.5) / n_centres
    x = torch.randn(1, 3, size, size)
    # Same draw on rows and columns; a transposed one checks the axes are not swapped.
    params = hand_params(dsa, "cutout", cutout=torch.tensor([[u, 0.5 / n_centres]]))
    out = dsa.apply(x, params)
    side = int(size * 0.5 + 0.5)
    col_end = min(side - side // 2, size)
    expected = x.clone()
    expected[:, :, rows[0] : rows[1], 0:col_end] = 0
    assert torch.equal(out, expected)


def test_cutout_random_draws_zero_one_clipped_square() -> None:
    dsa = DSA("cutout")
    x = torch.ones(200, 2, 8, 8)
    out = dsa(x, gen(11))
    assert torch.equal(out[:, 0], out[:, 1])  # one hole through all channels
    for o in out[:, 0]:
        zr = (o == 0).any(1).nonzero().flatten()
        zc = (o == 0).any(0).nonzero().flatten()
        h, w = zr.numel(), zc.numel()
        assert (o == 0).sum() == h * w  # a rectangle
        assert zr.max() - zr.min() + 1 == h and zc.max() - zc.min() + 1 == w  # contiguous
        for z, n in ((zr, h), (zc, w)):
            assert 1 <= n <= 4
            if 0 < z.min() and z.max() < 7:
                assert n == 4  # unclipped holes have the full side


def test_color_hand_computation() -> None:
    dsa = DSA("color")
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    b, s, c = torch.tensor([0.2, -0.4]), torch.tensor([1.5, 0.3]), torch.tensor([0.7, 1.4])
    out = dsa.apply(x, hand_params(dsa, "color", g=2, brightness=b, saturation=s, contrast=c))
    bb, ss, cc = (t.double().view(2, 1, 1, 1) for t in (b, s, c))
    y = x + bb
    m = y.mean(1, keepdim=True)
    y = (y - m) * ss + m
    m = y.mean((1, 2, 3), keepdim=True)
    y = (y - m) * cc + m
    torch.testing.assert_close(out, y, atol=1e-6, rtol=0)


def test_color_single_channel_saturation_is_noop() -> None:
    dsa = DSA("color")
    x = torch.randn(1, 1, 6, 6)
    out = dsa.apply(x, hand_params(dsa, "color", saturation=torch.tensor([1.9])))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_scale_matches_reference_affine_grid() -> None:
    dsa = DSA("scale")
    x = torch.randn(2, 3, 12, 12)
    sxy = torch.tensor([[1.15, 0.9], [0.85, 1.2]])
    out = dsa.apply(x, hand_params(dsa, "scale", g=2, scale=sxy))
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sxy[:, 0], sxy[:, 1]
    ref = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_rotate_matches_reference_and_quarter_turn_is_rot90() -> None:
    dsa = DSA("rotate")
    x = torch.randn(2, 3, 12, 12)
    a = torch.tensor([0.2, -0.25])
    out = dsa.apply(x, hand_params(dsa, "rotate", g=2, angle=a))
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = a.cos(), torch.sin(-a)
    theta[:, 1, 0], theta[:, 1, 1] = a.sin(), a.cos()
    ref = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # Positive angle = anticlockwise, as the reference's comment says.
    quarter = dsa.apply(x[:1], hand_params(dsa, "rotate", angle=torch.tensor([math.pi / 2])))
    torch.testing.assert_close(quarter, x[:1].rot90(1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_identity_valued_params_return_input_exactly() -> None:
    x = torch.randn(3, 3, 8, 8)
    for op in ("color", "scale", "rotate", "flip"):
        dsa = DSA(op)
        assert torch.equal(dsa.apply(x, hand_params(dsa, op, g=3)), x)
    dsa = DSA("crop")  # u = 0.5 is the zero shift
    assert torch.equal(dsa.apply(x, hand_params(dsa, "crop", g=3)), x)
    # Ops of the strategy that were not chosen leave the sample alone.
    dsa = DSA()
    p = hand_params(dsa, "color", g=3, angle=torch.full((3,), 0.2), scale=torch.full((3, 2), 1.1))
    assert torch.equal(dsa.apply(x, p), x)


# ---------------------------------------------------------------- configuration


def test_invalid_strategy_raises() -> None:
    with pytest.raises(ValueError, match=r"'blur'.*allowed ops: color, crop, cutout, flip, scale, rotate"):
        DSA("color_blur")
    with pytest.raises(ValueError, match="repeats"):
        DSA("flip_flip")
    with pytest.raises(ValueError):
        parse_strategy("Color")


def test_group_none_requires_one_group_per_sample() -> None:
    dsa = DSA()
    with pytest.raises(ValueError, match="one group per sample"):
        dsa.apply(torch.randn(4, 3, 8, 8), dsa.sample(3, gen()))
    with pytest.raises(ValueError, match="shape"):
        dsa.apply(torch.randn(4, 3, 8, 8), dsa.sample(3, gen()), torch.zeros(3, dtype=torch.long))


def test_strategy_for_auto_strips_flip_only_where_mirroring_changes_the_class() -> None:
    full = "color_crop_cutout_flip_scale_rotate"
    assert strategy_for("auto", flip_invariant=False) == "color_crop_cutout_scale_rotate"
    assert strategy_for("auto", flip_invariant=True) == full
    assert strategy_for(" AUTO ") == full  # natural images by default
    # an explicit strategy is the user's protocol (the reference code flips MNIST too): applied as written
    assert strategy_for(full, flip_invariant=False) == full
    assert strategy_for("flip", flip_invariant=False) == "flip"
    assert strategy_for("none") == "none"
