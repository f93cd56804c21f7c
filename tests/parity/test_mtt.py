"""MTT against GeorgeCazenavette/mtt-distillation ``distill.py`` (fixture: ``python -m benchmarks.parity
mtt``): from one expert buffer, set, ``syn_lr`` and the same draws, five outer steps of ddlight's
:class:`~ddlight.methods.trajectory.MTT` give the authors' loss after 5 student steps, gradients of the
images and of ``syn_lr``, and images and ``syn_lr`` after every update; and ddlight's expert buffer stores
what ``buffer.py`` stores."""

import torch

from tests.helpers.parity import load
from tests.helpers.trajectory import assert_parity, check_outer_steps, one_thread, parity_experts


def test_mtt_five_outer_steps_match_the_authors():
    ours = check_outer_steps("mtt")
    # hard labels: nothing else is learned
    assert set(ours[0]) == {"loss", "batches", "bound", "grad_images", "images", "grad_syn_lr", "syn_lr"}


def test_mtt_start_epochs_lie_in_the_fixed_window():
    fx = load("mtt")
    starts = [d["start_epoch"] for d in fx["inputs"]["draws"]]
    assert all(0 <= s < fx["inputs"]["settings"]["max_start_epoch"] for s in starts)


def test_expert_buffer_stores_what_buffer_py_stores(tmp_path):
    """ddlight's expert, on the batches and initial weights MTT's ``buffer.py`` loop was given, stores the
    same trajectory: E + 1 entries, entry 0 the initial weights, entry e after e epochs."""
    fx = load("mtt")
    batches = []
    with one_thread():
        ours = parity_experts(tmp_path, fx["inputs"]["buffer"]["buffer_epochs"], batches)
    want = fx["inputs"]["buffer"]["batches"]
    assert len(batches) == len(want) and all(
        torch.equal(x, wx) and torch.equal(y, wy) for (x, y), (wx, wy) in zip(batches, want, strict=True)
    ), "ddlight's expert batches changed: regenerate the fixture (python -m benchmarks.parity mtt)"
    theirs = fx["outputs"]["buffer"]["trajectory"]
    assert ours.shape == theirs.shape == (fx["outputs"]["buffer"]["entries"], theirs.shape[1])
    for e in range(len(theirs)):
        assert_parity(fx, f"buffer entry {e}", ours[e], theirs[e])
