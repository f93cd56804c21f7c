"""The benchmark scripts and the parity harness load the two ways they are run: scripts as
``python benchmarks/X.py`` (their directory on the path, siblings by bare name), the harness as
``python -m benchmarks.parity.X`` (a package, where a bare sibling import fails). A top-level import that
works one way only once broke ``python -m benchmarks.parity.trajectory_budget`` without a failing test."""

from __future__ import annotations

import importlib
import runpy
import sys

import pytest

from tests.helpers import ROOT

SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py")
HARNESS = sorted(p.stem for p in (ROOT / "benchmarks" / "parity").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", HARNESS)
def test_harness_module_imports_as_a_package(name, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("benchmarks")])
    # Earlier tests import these modules; a cached one would pass without being loaded again.
    for mod in [m for m in sys.modules if m in ("bench_data", "benchmarks") or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, mod)
    importlib.import_module(f"benchmarks.parity.{name}")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_loads_as_a_script(script, monkeypatch):
    monkeypatch.syspath_prepend(str(script.parent))
    namespace = runpy.run_path(str(script), run_name="loaded_by_test")
    assert callable(namespace.get("main")) or script.name == "bench_data.py"
