"""Memory: the process peak every distiller logs, and how glibc's heap treats freed activation buffers.

A CPU training step allocates and frees MB-sized activations by the hundred. With glibc's defaults a
freed block above the (dynamic) mmap threshold goes back to the OS, and the heap's free top is trimmed
once it exceeds twice that threshold, so the next step takes its memory again page by page, and a
ConvNet training step spent a measurable share of its time in page faults (docs/performance.md).
``configure_heap`` therefore keeps the heap by default ("keep": blocks up to glibc's
largest mmap threshold, 32 MiB, come from the heap, and the heap is trimmed only above 1 GiB of free top),
which the step reuses without faults, at the price of a slightly higher peak RSS where the kept heap
fragments. Large real
batches on a memory-tight machine can instead send every block above a threshold to mmap, whose pages
return on free ("release": ``DDLIGHT_MMAP_THRESHOLD=4194304``), for fewer resident MB and more faults;
``DDLIGHT_MMAP_THRESHOLD=0`` leaves glibc's defaults. Measurements are in docs/performance.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Literal

import torch

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
KEEP_TRIM_THRESHOLD = 2**30
ENV = "DDLIGHT_MMAP_THRESHOLD"
# glibc's own variables: a user who set one has chosen, and glibc read it at start-up
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

HeapPolicy = Literal["keep", "release", "glibc"]


def heap_policy(threshold_bytes: int | None = None) -> tuple[HeapPolicy, int]:
    """The policy ``threshold_bytes`` (default: ``DDLIGHT_MMAP_THRESHOLD``) asks for: unset "keep", 0
    "glibc", a positive number "release" at that threshold."""
    if threshold_bytes is None:
        raw = os.environ.get(ENV, "").strip()
        try:
            threshold_bytes = int(raw) if raw else None
        except ValueError:
            raise ValueError(f"{ENV}={raw!r}: expected a number of bytes (0: glibc's defaults)") from None
    if threshold_bytes is None:
        return "keep", KEEP_MMAP_THRESHOLD
    if threshold_bytes <= 0:
        return "glibc", 0
    return "release", int(threshold_bytes)


def configure_heap(threshold_bytes: int | None = None) -> HeapPolicy:
    """Apply :func:`heap_policy` to this process's glibc heap and return what applies: "glibc" off
    Linux/glibc, when asked, when glibc refuses, or when one of glibc's own ``MALLOC_*`` variables is set."""
    policy, threshold = heap_policy(threshold_bytes)
    if policy == "glibc" or not sys.platform.startswith("linux") or any(k in os.environ for k in GLIBC_ENV):
        return "glibc"
    name = ctypes.util.find_library("c")
    if name is None:
        return "glibc"
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return "glibc"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(M_MMAP_THRESHOLD, threshold):
        return "glibc"
    if policy == "keep" and not mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD):
        return "glibc"
    return policy


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: the CUDA allocator's, or on Linux the process's resident high-water mark
    (``VmHWM``, reset by writing 5 to ``/proc/self/clear_refs``), so that a run inside a longer process
    (the report's in-process stages) reports its own peak. Elsewhere the peak keeps counting from the
    process start."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last :func:`reset_peak_memory` (or the process start): the CUDA allocator's
    peak on a GPU, the resident-set high-water mark on CPU. ``ru_maxrss`` is only the fallback: Linux
    carries it across ``exec`` from the forking parent, so a subprocess would inherit its parent's peak."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not on Unix
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
