"""Import the authors' modules from a checkout, patched in memory only where a CPU needs it.

Their scripts import their siblings by bare name (``from utils import ...``), so a checkout is put on a
private meta-path finder rather than copied: each module is read from the checkout, the listed textual
patches are applied to its source, and it is executed under its bare name. Nothing is written anywhere.
The patches are the ones the parity issues allow: the device (``'cuda'`` hard-coded) and ``view`` ->
``reshape`` (today's torch refuses ``view`` on the non-contiguous CPU batches their code builds).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

# (old, new) source replacements applied to every module unless a caller passes its own list.
CPU_PATCHES: tuple[tuple[str, str], ...] = (
    ("out.view(out.size(0), -1)", "out.reshape(out.size(0), -1)"),
    (".view(", ".reshape("),
    ("'cuda:0'", "'cpu'"),
    ('"cuda:0"', '"cpu"'),
    (".cuda()", ".to('cpu')"),
)


class _PatchedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, root: Path, patches: Sequence[tuple[str, str]]) -> None:
        self.root, self.patches = root, tuple(patches)

    def _path(self, fullname: str) -> Path | None:
        rel = Path(*fullname.split("."))
        for cand in (self.root / rel.with_suffix(".py"), self.root / rel / "__init__.py"):
            if cand.is_file():
                return cand
        return None

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (importlib's protocol)
        found = self._path(fullname)
        folder = self.root / Path(*fullname.split("."))
        if found is None and folder.is_dir():
            # a folder without __init__.py (DC-Bench's evaluator/, data_loader/): a namespace package
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
            return spec
        if found is None:
            return None
        is_pkg = found.name == "__init__.py"
        spec = importlib.util.spec_from_loader(fullname, self, origin=str(found), is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = [str(found.parent)]
        return spec

    def create_module(self, spec):  # noqa: ANN001
        return None

    def exec_module(self, module: ModuleType) -> None:
        path = Path(module.__spec__.origin)
        source = path.read_text()
        for old, new in self.patches:
            source = source.replace(old, new)
        module.__file__ = str(path)
        exec(compile(source, str(path), "exec"), module.__dict__)


@contextmanager
def official_modules(
    root: Path, patches: Sequence[tuple[str, str]] = CPU_PATCHES
) -> Iterator[_PatchedFinder]:
    """While open, ``importlib.import_module('utils')`` etc. load ``root``'s patched files. On exit the
    modules loaded from ``root`` are dropped from ``sys.modules`` so that two checkouts (DC's and
    DataDAM's both have a ``utils.py``) can be used one after the other in one process."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"--official {root}: no such folder (a checkout of the authors' repository)")
    before = set(sys.modules)
    finder = _PatchedFinder(root, patches)
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            module = sys.modules[name]
            origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), "")
            if str(origin).startswith(str(root)):
                del sys.modules[name]


def load(root: Path, name: str, patches: Sequence[tuple[str, str]] = CPU_PATCHES) -> ModuleType:
    """One module of the checkout, imported (with its siblings) through :func:`official_modules`. The
    module stays usable after the context closes; it is simply no longer in ``sys.modules``."""
    with official_modules(root, patches):
        return importlib.import_module(name)


def commit_of(root: Path, given: str | None = None) -> str:
    """The checkout's commit: ``given`` when the user names it (a copy without ``.git``), else git's."""
    if given:
        return given
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as err:
        raise ValueError(f"--official {root} is not a git checkout: pass --commit SHA") from err
    return out.stdout.strip()
