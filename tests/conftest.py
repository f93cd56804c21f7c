from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SHARED_DATA = (TESTS.parent / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The full MNIST in torchvision layout that CI and developers share; tests skip without it."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _threads():
    # Two-core CI machine: keep torch from oversubscribing when pytest runs many small ops.
    import os

    import torch

    # DDLIGHT_TEST_THREADS=1 lets tests run beside a benchmark without fighting it for both cores.
    torch.set_num_threads(int(os.environ.get("DDLIGHT_TEST_THREADS", "2")))
