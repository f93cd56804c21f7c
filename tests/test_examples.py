"""The documented Python example (docs/python.md, README) runs: distil, export, evaluate."""

from __future__ import annotations

import importlib.util

import pytest

from ddlight.data import SyntheticSet
from tests.helpers import ROOT


@pytest.mark.slow
def test_python_api_example_distils_and_evaluates(tmp_path):
    spec = importlib.util.spec_from_file_location("python_api", ROOT / "examples" / "python_api.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = example.distil(tmp_path, steps=2)
    syn = SyntheticSet.load(path)
    assert syn.method == "datadam" and syn.iteration == 2 and tuple(syn.images.shape) == (10, 1, 28, 28)
    res = example.evaluate(path, epochs=2)
    assert len(res["accuracies"]) == 2 and 0.0 <= res["mean"] <= 1.0
