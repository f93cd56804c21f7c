"""Memory: the process peak every distiller logs, and (opt-in) keeping glibc from holding freed
activation buffers, for peak RSS of large-batch CPU runs.

A DataDAM step at 256 real images per class allocates and frees many MB-sized transients (the real batch,
its DSA intermediates, per-chunk activations). glibc's malloc raises its mmap threshold dynamically as such
blocks are freed, after which they come from the heap, fragment it and stay resident. Pinning the threshold
sends every larger block to mmap, whose pages go back to the OS on free. It lowers peak RSS at 256 real
images per class, but at 64 per class the extra page faults cost more than they save, so it is off by
default: set ``DDLIGHT_MMAP_THRESHOLD=4194304`` for large real batches on a memory-tight machine. The
measurements (``benchmarks/distill_speed.py --mmap-threshold N``) are in docs/performance.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
DEFAULT_THRESHOLD_BYTES = 0  # off; see the table above
ENV = "DDLIGHT_MMAP_THRESHOLD"


def limit_heap_retention(threshold_bytes: int | None = None) -> bool:
    """Pin glibc's mmap threshold to ``threshold_bytes`` (default: ``DDLIGHT_MMAP_THRESHOLD``, else off).

    Returns whether the setting was applied: False off Linux/glibc, when disabled, or when glibc refuses.
    An explicit ``MALLOC_MMAP_THRESHOLD_`` in the environment wins (glibc read it at start-up).
    """
    if threshold_bytes is None:
        threshold_bytes = int(os.environ.get(ENV, DEFAULT_THRESHOLD_BYTES))
    if threshold_bytes <= 0 or not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)))


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
