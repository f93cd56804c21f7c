"""ddlight's DSA ops against the reference's ``DiffAugment`` ops given the same random draws (fixture:
``python -m benchmarks.parity dsa_ops --official PATH``; tolerance in its manifest)."""

from __future__ import annotations

import pytest
import torch

from ddlight.ops.augment import ALLOWED_OPS, DSA, FIELD_STRATEGY
from tests.helpers.parity import assert_matches, load

FIX = load("dsa_ops")


@pytest.mark.parametrize("op", ALLOWED_OPS)
def test_each_op_per_sample_draws(op: str) -> None:
    x, u = FIX["inputs"]["x"], FIX["inputs"]["per_sample"][op]
    dsa = DSA(op)
    ours = dsa.apply(x, dsa.from_uniforms(torch.zeros(x.shape[0], dtype=torch.long), u))
    theirs = FIX["outputs"]["per_sample"][op]
    assert not torch.equal(theirs, x), f"the reference's {op} left the batch unchanged: nothing is tested"
    assert_matches(FIX, f"{op} (per sample)", ours, theirs)


def test_siamese_diffaugment_with_field_strategy() -> None:
    x = FIX["inputs"]["x"][:2]
    dsa = DSA(FIELD_STRATEGY)
    drawn = set()
    for seed, draw in FIX["inputs"]["siamese"].items():
        params = dsa.from_uniforms(draw["op"], draw["u"])
        ours = dsa.apply(x, params, torch.zeros(x.shape[0], dtype=torch.long))
        assert_matches(FIX, f"DiffAugment seed {seed}", ours, FIX["outputs"]["siamese"][seed])
        drawn.add(dsa.ops[int(draw["op"])])
    assert len(drawn) >= 5  # the seeds cover most ops, each op is also covered per sample above


def test_defaults_are_param_diff_aug() -> None:
    ref = FIX["inputs"]["param_diff_aug"]
    dsa = DSA()
    assert ref["aug_mode"] == "S"  # one op per draw, as DSA.sample does
    for name in ("prob_flip", "ratio_scale", "ratio_rotate", "ratio_crop_pad", "ratio_cutout"):
        assert getattr(dsa, name) == ref[name], name
    for name in ("brightness", "saturation", "contrast"):
        assert getattr(dsa, name) == ref[name], name
