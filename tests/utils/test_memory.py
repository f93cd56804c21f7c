import ctypes.util
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddlight.utils import memory
from ddlight.utils.memory import peak_memory_mb, reset_peak_memory


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


def touched_mapping(nbytes: int) -> mmap.mmap:
    """Anonymous memory outside malloc's heap, every page written: resident until closed, whatever
    earlier tests did to glibc's thresholds (a heap allocation may reuse chunks that are already
    resident and move no peak at all)."""
    m = mmap.mmap(-1, nbytes)
    for i in range(0, nbytes, mmap.PAGESIZE):
        m[i] = 1
    return m


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_resets_so_a_run_reports_its_own_peak():
    cpu = torch.device("cpu")
    big = touched_mapping(64 * 2**20)
    with_big = peak_memory_mb(cpu)
    big.close()
    reset_peak_memory(cpu)
    after = peak_memory_mb(cpu)
    assert after < with_big - 32  # the released 64 MiB no longer counts
    again = touched_mapping(64 * 2**20)
    assert peak_memory_mb(cpu) > after + 32  # and new memory does
    again.close()
