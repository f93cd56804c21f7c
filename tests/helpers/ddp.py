"""Two CPU ranks under DDP (gloo) in a subprocess, each dumping what it saw (probes.RecordRanks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.helpers import ROOT
from tests.helpers.cli_args import QUIET

DDP = ("--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2")


def rank_records(out_dir: Path) -> tuple[dict, dict]:
    """Each rank's record (images it ended with, first batches it saw, world size, pid)."""
    return torch.load(out_dir / "rank0.pt"), torch.load(out_dir / "rank1.pt")


def fit_many_on_two_ranks(
    runs: dict[str, tuple[Path, tuple[str, ...]]], out_dir: Path, logged: tuple[str, ...] = ()
) -> tuple[dict[str, tuple], str]:
    """``{name: (config, flags)}`` fitted one after the other in a single two-rank launch
    (tests/helpers/ddp_many.py: each run costs its fit, not another process start-up); each run's rank
    records (see :func:`rank_records`) under ``out_dir/name``, and the launch's output. The runs named in
    ``logged`` keep their config's logger and checkpoints; the others run quiet."""
    cmds = [
        [
            "fit",
            "--config",
            str(config),
            *extra,
            *DDP,
            *(("--trainer.enable_progress_bar", "false") if name in logged else QUIET),
            "--trainer.callbacks+=tests.helpers.probes.RecordRanks",
            f"--trainer.callbacks.out_dir={out_dir / name}",
        ]
        for name, (config, extra) in runs.items()
    ]
    (out_dir / "runs.json").write_text(json.dumps(cmds))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = [sys.executable, str(ROOT / "tests" / "helpers" / "ddp_many.py"), str(out_dir / "runs.json")]
    out = subprocess.run(script, cwd=out_dir, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: rank_records(out_dir / name) for name in runs}, out.stdout + out.stderr
