"""ddlight's DataDAM against the authors' ``main_DataDAM.py`` iteration, one and five image updates from
one state, in the released-code configuration (``configs/mnist/datadam_reference_code.yaml``) and the
paper's (``configs/mnist/datadam.yaml``). Fixtures: ``python -m benchmarks.parity datadam --official
PATH``; their DSA draws injected, tolerance in the manifests."""

from __future__ import annotations

import pytest

from benchmarks.parity.datadam import ddlight_datadam
from benchmarks.parity.dm import compared, ddlight_steps, kept
from tests.helpers.parity import assert_matches, load


@pytest.mark.parametrize("name", ["datadam_code", "datadam_paper"])
def test_datadam_steps_match_the_reference(name: str) -> None:
    fix = load(name)
    inputs, theirs = fix["inputs"], fix["outputs"]
    ours = kept(ddlight_steps(ddlight_datadam(name, inputs), inputs))
    for label, o, t in compared(ours, theirs, inputs["images"]):
        assert_matches(fix, label, o, t, relative_to_max=True)
    assert (theirs["images"][-1] - inputs["images"]).abs().max() > 0  # the images moved
