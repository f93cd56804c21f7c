"""DSA against the authors' main.py (--method DSA, released strategy, flip included): one outer iteration
with the reference's recorded draws injected must reproduce what their code computed
(``python -m benchmarks.parity dsa``)."""

from benchmarks.parity.dc import ROWS
from benchmarks.parity.dsa import STRATEGY, ours_injected
from tests.helpers.parity import assert_matches, load


def test_dsa_outer_iteration_matches_the_authors():
    fixture = load("dsa")
    assert fixture["inputs"]["config"]["strategy"] == STRATEGY == "color_crop_cutout_flip_scale_rotate"
    mine = ours_injected(fixture["inputs"])
    for key, label in ROWS:
        assert_matches(fixture, label, mine[key], fixture["outputs"][key])
