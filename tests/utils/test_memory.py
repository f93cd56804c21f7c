import ctypes.util
import os
import subprocess
import sys

import pytest

from ddlight.utils import memory


def test_off_by_default_and_when_zero(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.limit_heap_retention() is False
    assert memory.limit_heap_retention(0) is False


def test_explicit_glibc_variable_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert memory.limit_heap_retention(4 * 2**20) is False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None, reason="needs glibc"
)
def test_applies_on_glibc():
    # In a child process: a pinned threshold would otherwise stay for the rest of the test session.
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env[memory.ENV] = str(4 * 2**20)
    code = "from ddlight.utils.memory import limit_heap_retention as f; print(f(), f(0))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
