"""Two CPU ranks under DDP (gloo) in a subprocess, each dumping what it saw (probes.RecordRanks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.helpers import ROOT
from tests.helpers.cli_args import QUIET


def fit_on_two_ranks(config: Path, out_dir: Path, *extra: str) -> tuple[dict, dict]:
    """``python -m ddlight fit --config config *extra`` on 2 CPU ranks; each rank's record (images it ended
    with, first batches it saw, world size, pid). A hang fails on the timeout, not by stalling the suite."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddlight",
            "fit",
            "--config",
            str(config),
            *extra,
            "--trainer.strategy",
            "ddp",
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            *QUIET,
            "--trainer.callbacks+=tests.helpers.probes.RecordRanks",
            f"--trainer.callbacks.out_dir={out_dir}",
        ],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(out_dir / "rank0.pt"), torch.load(out_dir / "rank1.pt")
