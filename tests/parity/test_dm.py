"""ddlight's DM against the authors' ``main_DM.py`` iteration, one and five image updates from one state
(fixture: ``python -m benchmarks.parity dm --official PATH``; their DSA draws injected, tolerance in the
manifest)."""

from __future__ import annotations

from benchmarks.parity.dm import compared, ddlight_dm, ddlight_steps, kept
from tests.helpers.parity import assert_matches, load

FIX = load("dm")


def test_dm_steps_match_the_reference() -> None:
    inputs, theirs = FIX["inputs"], FIX["outputs"]
    ours = kept(ddlight_steps(ddlight_dm(inputs), inputs))
    for label, o, t in compared(ours, theirs, inputs["images"]):
        assert_matches(FIX, label, o, t, relative_to_max=True)
    # the images moved: a step that did nothing would also "match" an unchanged start
    assert (theirs["images"][-1] - inputs["images"]).abs().max() > 1e-2
