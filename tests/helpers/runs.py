"""Checks of a whole CLI run that every distiller's tests make: resume, and what reached TensorBoard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def assert_resume_reaches_the_same_images(
    run: Callable[..., object], tmp_path: Path, total: int, split: int
) -> None:
    """``run(steps, out_name, *flags)`` builds a CLI run; a run of ``total`` steps and one checkpointed at
    ``split`` then resumed to ``total`` must end with the same images."""
    full = run(total, "full", "--trainer.enable_checkpointing", "false")
    ckdir = tmp_path / "ck"
    run(
        split,
        "part",
        "--trainer.callbacks+=ModelCheckpoint",
        f"--trainer.callbacks.dirpath={ckdir}",
        f"--trainer.callbacks.every_n_train_steps={split}",
    )
    ckpt = str(sorted(ckdir.glob("*.ckpt"))[-1])
    resumed = run(total, "resumed", "--trainer.enable_checkpointing", "false", "--ckpt_path", ckpt)
    assert resumed.trainer.global_step == total
    torch.testing.assert_close(resumed.model.images.detach(), full.model.images.detach(), rtol=0, atol=1e-6)


def assert_tensorboard_has_loss_and_grid(save_dir: Path) -> None:
    """The run under ``save_dir`` logged ``distill/loss``, the process's peak memory and at least one image
    grid."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = save_dir.rglob("events.out.tfevents.*")
    tags = EventAccumulator(str(events)).Reload().Tags()
    assert "distill/loss" in tags["scalars"] and "memory/peak_mb" in tags["scalars"] and tags["images"]


def bf16_logged_run_flags(tmp_path: Path, steps: int = 2) -> tuple[str, ...]:
    """CLI flags for ``steps`` bf16-mixed steps exporting to ``tmp_path/out`` and logging every step to
    TensorBoard under ``tmp_path/logs`` (no checkpoints)."""
    return (
        "--model.init_args.export_dir",
        str(tmp_path / "out"),
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.max_steps",
        str(steps),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"),
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_checkpointing",
        "false",
    )


def assert_bf16_run_kept_fp32_images(cli: object, tmp_path: Path, steps: int = 2) -> None:
    """After :func:`bf16_logged_run_flags`: the learnable set stayed fp32 and finite (autocast lowers only the
    network's compute), the export is at ``steps``, and TensorBoard got the loss and a grid."""
    from ddlight.data import SyntheticSet

    assert cli.model.images.dtype == torch.float32 and torch.isfinite(cli.model.images).all()
    assert SyntheticSet.load(tmp_path / "out" / "synthetic.pt").iteration == steps
    assert_tensorboard_has_loss_and_grid(tmp_path / "logs")


def cli_exit(args: list[str], capsys) -> tuple[int, str, str]:
    """``python -m ddlight <args>`` in this process: its exit code, stdout and stderr. One subprocess test
    below checks that the real command line behaves the same."""
    from ddlight.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    out = capsys.readouterr()
    return stop.value.code or 0, out.out, out.err
