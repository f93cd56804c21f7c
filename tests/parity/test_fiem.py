"""PAD's FIEM (``distill/PAD.py``, fixture: ``python -m benchmarks.parity fiem``): at every ``loss_ratio``
ddlight drops exactly the parameters the authors' code drops."""

import pytest
import torch

from ddlight.methods.trajectory.fiem import loss_ratio_mask
from tests.helpers.parity import load


def test_loss_ratio_mask_keeps_the_authors_parameters():
    fx = load("fiem")
    x = fx["inputs"]
    for ratio, theirs in zip(x["ratios"], fx["outputs"]["kept"], strict=True):
        ours = loss_ratio_mask(x["student"], x["target"], ratio)
        assert torch.equal(ours, theirs), f"loss_ratio {ratio}: {int((ours != theirs).sum())} entries differ"
        assert int(ours.sum()) == len(ours) - int(ratio * len(ours))


def test_loss_ratio_out_of_range_is_refused():
    with pytest.raises(ValueError, match="loss_ratio"):
        loss_ratio_mask(torch.zeros(3), torch.zeros(3), 1.0)
