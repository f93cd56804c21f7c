"""DC against the authors' main.py: one outer iteration (5 image updates, inner loops between) from the
fixture's state must reproduce what their code computed (``python -m benchmarks.parity dc``)."""

from benchmarks.parity.dc import ROWS, ours
from tests.helpers.parity import assert_matches, load


def test_dc_outer_iteration_matches_the_authors():
    fixture = load("dc")
    assert fixture["inputs"]["config"]["strategy"] == "none"
    mine = ours(fixture["inputs"])
    for key, label in ROWS:
        assert_matches(fixture, label, mine[key], fixture["outputs"][key])
