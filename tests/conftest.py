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


@pytest.fixture(scope="session")
def family_ddp_records(tmp_path_factory) -> dict:
    """DataDAM, DM, DSA and DATM (every family base) fitted on two DDP ranks, all in one launch
    (tests/helpers/ddp.fit_many_on_two_ranks): per method the two ranks' records, and under "output" what
    the launch printed. DataDAM runs as the README runs it: no export_dir (the export path comes from the
    logger, a broadcast), a logger and periodic checkpoints; it used to hang after the last step."""
    from tests.helpers import ROOT
    from tests.helpers.cli_args import SHORT_DSA, TINY_DATADAM, TINY_TRAJECTORY
    from tests.helpers.ddp import fit_many_on_two_ranks
    from tests.helpers.trajectory import write_buffer

    root = tmp_path_factory.mktemp("family_ddp")
    configs = ROOT / "configs" / "mnist"
    short = ("--model.init_args.grid_every", "0", "--trainer.max_steps", "3")
    # the tiny buffer, and no loss threshold: every step updates the set
    buffer = ("--model.init_args.buffer_dir", str(write_buffer(root)), "--model.init_args.loss_threshold")
    datadam = (*TINY_DATADAM, "--model.init_args.lr_img", "10", "--model.init_args.grid_every", "0")
    datadam += ("--model.init_args.checkpoint_every", "2", "--trainer.max_steps", "4")
    datadam += ("--trainer.logger.init_args.save_dir", str(root / "datadam_logs"))
    runs = {
        "dm": (configs / "dm.yaml", (*TINY_DATADAM, *short)),
        "dsa": (configs / "dc.yaml", (*TINY_DATADAM, *SHORT_DSA, *short)),
        "datm": (configs / "datm.yaml", (*TINY_TRAJECTORY, *buffer, "null", *short)),
    }
    runs = {k: (c, (*f, "--model.init_args.export_dir", str(root / k / "out"))) for k, (c, f) in runs.items()}
    runs["datadam"] = (configs / "datadam.yaml", datadam)
    records, output = fit_many_on_two_ranks(runs, root, logged=("datadam",))
    return {**records, "output": output, "datadam_logs": root / "datadam_logs"}
