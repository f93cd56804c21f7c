"""The data the benchmarks run on: real MNIST from ../shared/data, or a generated CIFAR-10-shaped set
(50,000 train / 10,000 test uint8 images of 3 x 32 x 32, 10 classes) served by ``CIFAR10DataModule`` itself,
so that every cost of a CIFAR-10 run but reading the pickles is measured without the real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

from ddlight.data import CIFAR10DataModule, MNISTDataModule
from ddlight.data.base import RealDataModule

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATASETS = ("mnist", "cifar10-generated")


class GeneratedCIFAR10(CIFAR10DataModule):
    """CIFAR-10's shape, normalisation and names; seeded random pixels with a per-class brightness."""

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = 50_000 if split == "train" else 10_000
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        labels = torch.arange(n) % 10
        images = torch.randint(0, 200, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        return images + (5 * labels).to(torch.uint8).view(-1, 1, 1, 1), labels


def make_datamodule(name: str, **kwargs) -> RealDataModule:
    if name == "mnist":
        return MNISTDataModule(data_dir=str(DATA), **kwargs)
    if name == "cifar10-generated":
        return GeneratedCIFAR10(**kwargs)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def add_heap_option(ap) -> None:  # noqa: ANN001 (argparse.ArgumentParser)
    """``--mmap-threshold``: the glibc heap policy of the whole benchmark, ddlight's rows and the reference's
    alike, so a ratio measures the code and not the allocator (ddlight/utils/memory.py)."""
    ap.add_argument(
        "--mmap-threshold",
        type=int,
        default=None,
        help="heap policy for both sides, as DDLIGHT_MMAP_THRESHOLD: unset = ddlight's default (keep freed "
        "blocks), 0 = glibc's defaults, N = release blocks above N bytes",
    )


def heap_environment(threshold: int | None) -> tuple[str, dict[str, str]]:
    """The policy and an environment that gives a child process it through glibc's own variables from its
    start: for code that cannot call :func:`~ddlight.utils.configure_heap` (the authors' scripts), and then
    for ddlight's side too, so both start alike."""
    from ddlight.utils.memory import GLIBC_ENV, KEEP_TRIM_THRESHOLD, heap_policy

    policy, mmap_bytes = heap_policy(threshold)
    env = {k: v for k, v in os.environ.items() if k not in GLIBC_ENV}
    if policy != "glibc":
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_bytes)
    if policy == "keep":
        env["MALLOC_TRIM_THRESHOLD_"] = str(KEEP_TRIM_THRESHOLD)
    return policy, env


def apply_heap(threshold: int | None) -> str:
    """Apply the policy (in this process) and return the line that says which one the rows ran under."""
    from ddlight.utils import configure_heap

    return f"glibc heap: {configure_heap(threshold)} (both sides)"


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matmul on this machine, in this process's thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


# A benchmark's ``--compile`` choice and what ``ConvNet(compile=...)`` takes for it.
COMPILE_VALUES: dict[str, bool | str] = {"off": False, "no_grad": "no_grad", "true": True, "auto": "auto"}
COMPILE_CHOICES = tuple(COMPILE_VALUES)


def compile_value(choice: str) -> bool | str:
    """A benchmark's ``--compile`` choice as ``ConvNet(compile=...)`` takes it."""
    return COMPILE_VALUES[choice]


def reference_convnet(**kwargs) -> nn.Module:
    """ddlight's ConvNet with the released code's modules (``nn.ReLU``, ``nn.AvgPool2d``), for the
    reference-style loops: ddlight's own ReLU and pooling kernels (``lean_graph``, ``kernels.AvgPool2x2``)
    are part of what they compare."""
    from ddlight.models import ConvNet

    net = ConvNet(lean_graph=False, **kwargs)
    if isinstance(net.pool, nn.AvgPool2d):
        net.pool = nn.AvgPool2d(2, 2)
    return net
