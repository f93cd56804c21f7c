"""PAD against NUS-HPC-AI-Lab/PAD ``distill/PAD.py`` (fixture: ``python -m benchmarks.parity pad``): DATM's
pieces on PAD's copy (label init, window) and five outer steps with the released FIEM, ``loss_ratio``
0.5 (the parameters closest to the target leave the loss), soft labels and the threshold.

Failing before: ddlight had only the depth mask of PAD's history (``depth_ratio``), not the released
file's ``loss_ratio``; run with ``loss_ratio`` 0 the first loss differs by 1.2e-3 relative, the gradients
of the images, labels and ``syn_lr`` by 3.0 %, 1.7 % and 2.2 % of their largest entries
(``test_pad_without_the_loss_ratio_mask_differs``)."""

import pytest

from tests.helpers.parity import load
from tests.helpers.trajectory import (
    assert_parity,
    check_outer_steps,
    one_thread,
    parity_label_init,
    parity_method,
    parity_outer_steps,
)


def test_pad_five_outer_steps_match_the_authors():
    check_outer_steps("pad")


def test_pad_label_init_matches_the_authors():
    fx = load("pad")
    got, want = parity_label_init(fx["inputs"]), fx["outputs"]["init"]
    assert got["rows"].tolist() == want["rows"].tolist()
    assert_parity(fx, "init logits", got["logits"], want["logits"])


def test_pad_without_the_loss_ratio_mask_differs():
    fx = load("pad")
    inputs = {**fx["inputs"], "settings": {**fx["inputs"]["settings"], "loss_ratio": 0.0}}
    with one_thread():
        ours = parity_outer_steps(parity_method("pad", inputs), inputs["perm_seed"], inputs["draws"][:1])
    with pytest.raises(AssertionError):
        assert_parity(fx, "it1 loss", ours[0]["loss"], fx["outputs"]["iterations"][0]["loss"])
