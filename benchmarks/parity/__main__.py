"""``python -m benchmarks.parity <method> --official PATH``: run one method's comparison.

Each method module defines ``REPO`` (the authors' repository) and ``run(official, commit, out) -> bool``
(True when every quantity is within tolerance); this entry point only finds it by name.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks.parity as pkg
from benchmarks.parity.fixtures import FIXTURES
from benchmarks.parity.official import commit_of

NOT_METHODS = {"official", "fixtures", "budget", "__main__"}  # budget: equal-budget accuracy runs


def methods() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in NOT_METHODS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__)
    ap.add_argument("method", choices=methods())
    ap.add_argument("--official", type=Path, required=True, help="a checkout of the authors' repository")
    ap.add_argument("--commit", help="the checkout's commit, when it is a copy without .git")
    ap.add_argument("--out", type=Path, default=FIXTURES, help="where the fixture is written")
    ap.add_argument("--no-write", action="store_true", help="compare only; leave the fixture as it is")
    a = ap.parse_args(argv)
    module = importlib.import_module(f"benchmarks.parity.{a.method}")
    ok = module.run(a.official, commit_of(a.official, a.commit), None if a.no_write else a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
