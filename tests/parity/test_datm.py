"""DATM against NUS-HPC-AI-Lab/DATM ``distill/DATM.py`` (fixture: ``python -m benchmarks.parity datm``):
the soft-label initialisation (which candidates are kept, their logits), the growing start-epoch window,
and five outer steps with learnable labels, the window growing and a loss threshold that skips three of
them (loss, gradients of images, labels and ``syn_lr``, state after every update)."""

import torch

from tests.helpers.parity import load
from tests.helpers.trajectory import assert_parity, check_outer_steps, parity_label_init, window_bounds


def test_datm_five_outer_steps_match_the_authors():
    ours = check_outer_steps("datm")
    skipped = [bool(o["skipped"]) for o in ours]
    assert any(skipped) and not all(skipped), "the fixture's threshold must skip some steps, not all"


def test_datm_label_init_keeps_the_authors_images_and_logits():
    fx = load("datm")
    got, want = parity_label_init(fx["inputs"]), fx["outputs"]["init"]
    assert got["rows"].tolist() == want["rows"].tolist()
    assert got["wrong"] == 0
    assert_parity(fx, "init logits", got["logits"], want["logits"])
    # the outer steps start from exactly these
    assert torch.equal(fx["inputs"]["images"], fx["inputs"]["candidates"][want["rows"]])


def test_datm_window_bound_matches_upper_bound():
    fx = load("datm")
    assert torch.equal(window_bounds(fx["inputs"]), fx["outputs"]["window"])
