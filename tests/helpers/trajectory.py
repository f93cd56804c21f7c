"""Builders for the trajectory-matching methods (MTT, DATM, PAD) on a tiny expert buffer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentParser

from ddlight.methods.trajectory import DATM, TrajectoryMatching
from tests.helpers.builders import TinyDigits, make_experts, make_trainer, tiny_net

# Small enough for TinyDigits' two-expert, three-epoch buffer and a few seconds per test; what every
# method accepts (MTT's signature is the narrowest).
TINY_ARGS = dict(
    ipc=2,
    syn_steps=4,
    expert_epochs=1,
    max_start_epoch=2,
    batch_syn=4,
    lr_img=10.0,
    lr_lr=1e-4,
    lr_teacher_init=0.05,
    dsa_strategy="none",
    grid_every=0,
)


def write_buffer(root: Path) -> Path:
    """Two experts x 3 epochs of 3 batches at lr 0.05 on TinyDigits, which classify its test split
    perfectly (no curriculum: EL2N is tested in test_experts)."""
    make_trainer(6, root).fit(make_experts(root / "buf", scheduler=False, lr=0.05), datamodule=TinyDigits())
    return root / "buf"


def make_method(
    cls: type[TrajectoryMatching], buffer_dir: Path, net: torch.nn.Module | None = None, **kw
) -> TrajectoryMatching:
    # DATM's default window (20 -> 25 over 3000 iterations) exceeds the tiny buffer: grow 1 -> 2 instead.
    window = {"current_max_start_epoch": 1, "max_start_epoch_growth_steps": 2} if cls is DATM else {}
    return cls(net or tiny_net(), buffer_dir=str(buffer_dir), **{**TINY_ARGS, **window, **kw})


def fit(
    model: TrajectoryMatching,
    steps: int,
    root: Path,
    ckpt_path: Path | None = None,
    dm: object = None,
    precision: str = "32-true",
) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    # weights_only=False: outside the CLI the hparams hold the ConvNet object itself (our own file).
    trainer.fit(model, datamodule=dm or TinyDigits(), ckpt_path=ckpt_path, weights_only=False)
    return trainer


def plan_of(model: TrajectoryMatching, step: int = 0):
    return model.plan(step, torch.Generator().manual_seed(1234 + step))


def exposed(cls) -> dict:
    """The init args the CLI offers for ``cls`` (what ``--help`` lists), with their defaults."""
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "m", skip={"net"})
    return dict(parser.get_defaults().m)
