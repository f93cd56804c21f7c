"""A callback the DDP test injects by class_path: each rank dumps what it saw."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch


class RecordRanks(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch[0][:4].clone())

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "images": pl_module.images.detach().clone(),
                # what else a method learns (trajectory matching's soft labels and student rate)
                "learned": {
                    n: p.detach().clone()
                    for n, p in pl_module.named_parameters()
                    if n != "images" and p.requires_grad
                },
                "batches": torch.stack(self.batches),
                "world_size": trainer.world_size,
                "pid": os.getpid(),
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


class InterruptAt(L.Callback):
    """Sends this process a real SIGINT at the end of step ``step``, as Ctrl-C in a terminal would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import signal

            os.kill(os.getpid(), signal.SIGINT)
