"""MTT against GeorgeCazenavette/mtt-distillation ``distill.py`` (fixture: ``python -m benchmarks.parity
mtt``): from one expert buffer, set, ``syn_lr`` and the same draws, five outer steps of ddlight's
:class:`~ddlight.methods.trajectory.MTT` give the authors' loss after 5 student steps, gradients of the
images and of ``syn_lr``, and images and ``syn_lr`` after every update."""

from tests.helpers.parity import load
from tests.helpers.trajectory import check_outer_steps


def test_mtt_five_outer_steps_match_the_authors():
    ours = check_outer_steps("mtt")
    # hard labels: nothing else is learned
    assert set(ours[0]) == {"loss", "batches", "bound", "grad_images", "images", "grad_syn_lr", "syn_lr"}


def test_mtt_start_epochs_lie_in_the_fixed_window():
    fx = load("mtt")
    starts = [d["start_epoch"] for d in fx["inputs"]["draws"]]
    assert all(0 <= s < fx["inputs"]["settings"]["max_start_epoch"] for s in starts)
