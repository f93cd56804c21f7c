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

GLIBC = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None, reason="needs glibc"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ("keep", memory.KEEP_MMAP_THRESHOLD)), ("0", ("glibc", 0)), ("4194304", ("release", 4194304))],
)
def test_the_variable_chooses_the_policy(monkeypatch, value, expected):
    monkeypatch.delenv(memory.ENV, raising=False)
    if value is not None:
        monkeypatch.setenv(memory.ENV, value)
    assert memory.heap_policy() == expected


def test_a_variable_that_is_not_a_number_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv(memory.ENV, "4MB")
    with pytest.raises(ValueError, match=r"^DDLIGHT_MMAP_THRESHOLD='4MB': expected a number of bytes"):
        memory.heap_policy()


def test_glibc_variables_set_by_the_user_win(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert memory.configure_heap() == "glibc"
    assert memory.configure_heap(0) == "glibc"


def step_faults(env: dict[str, str]) -> tuple[str, float]:
    """The policy a child process applied and the median minor page faults of five ConvNet-3 training steps
    on 100 MNIST-sized images after three warm-up steps (a step that grows the heap once faults anyway)."""
    code = (
        "import resource, statistics, torch; from ddlight.utils.memory import configure_heap\n"
        "policy = configure_heap(); from ddlight.models import ConvNet; torch.manual_seed(0)\n"
        "net = ConvNet(compile=False); opt = torch.optim.SGD(net.parameters(), lr=0.01)\n"
        "x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))\n"
        "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "def step():\n"
        "    t = faults(); opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward()\n"
        "    opt.step(); return faults() - t\n"
        "[step() for _ in range(3)]; print(policy, statistics.median(step() for _ in range(5)))"
    )
    keep = {k: v for k, v in os.environ.items() if k not in memory.GLIBC_ENV and k != memory.ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**keep, **env}, capture_output=True, text=True, check=True
    )
    policy, faults = out.stdout.split()
    return policy, float(faults)


@GLIBC
def test_the_kept_heap_trains_without_page_faults():
    # glibc's defaults hand freed activations back and fault them in again, thousands of pages a step
    policy, faults = step_faults({memory.ENV: "0"})
    assert policy == "glibc" and faults > 1_000
    policy, faults = step_faults({})
    assert policy == "keep" and faults < 100


@GLIBC
def test_release_applies_on_glibc():
    # In a child process: a pinned threshold would otherwise stay for the rest of the test session.
    env = {k: v for k, v in os.environ.items() if k not in memory.GLIBC_ENV}
    env[memory.ENV] = str(4 * 2**20)
    code = "from ddlight.utils.memory import configure_heap as f; print(f(), f(0))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["release", "glibc"]


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
