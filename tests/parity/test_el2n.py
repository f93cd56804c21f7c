"""PAD's FIEX curriculum (``buffer/buffer_CL.py``, fixture: ``python -m benchmarks.parity el2n``): from
the same difficulty scores, every expert epoch of ddlight's schedule trains on exactly the samples the
authors' selects, through all four phases (adding, full, first and second removal)."""

import torch

from ddlight.methods.trajectory.fiex import FIEX, fiex_schedule
from tests.helpers.parity import load


def test_fiex_schedule_selects_the_authors_samples_every_epoch():
    fx = load("el2n")
    x = fx["inputs"]
    sizes = []
    for epoch, theirs in enumerate(fx["outputs"]["indices"]):
        ours = fiex_schedule(x["scores"], epoch, x["labels"], FIEX(**x["phases"]))
        assert torch.equal(ours, theirs), f"epoch {epoch}"
        sizes.append(len(ours))
    assert sizes == [66, 72, 78, 84, 90, 90, 90, 81, 81, 72, 72, 72]  # the four phases, 3 classes x 30
