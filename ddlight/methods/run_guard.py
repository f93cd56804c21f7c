"""What keeps a distillation run's work when it is interrupted, crashes or diverges.

A distillation run is hours of CPU for one small tensor, so losing it to Ctrl-C, a SIGTERM or a learning
rate that blows up is the failure users meet first. :class:`RunGuard` is the callback every
:class:`~ddlight.methods.distiller.Distiller` attaches to its trainer (``configure_callbacks``):

* **periodic checkpoints**: ``last.ckpt`` every ``checkpoint_every`` steps and at the end, beside the
  exported set (``<export dir>/checkpoints``), when the trainer has checkpointing enabled. It is a plain
  callback, not a ``ModelCheckpoint`` subclass: Lightning replaces a trainer's checkpoint callbacks by any
  model callback that subclasses them, and a user's own ``ModelCheckpoint`` must keep working.
* **Ctrl-C finishes the step**: the first SIGINT asks the run to stop at the end of the current step, so
  the checkpoint it writes there resumes to exactly the images of an uninterrupted run; a second Ctrl-C
  stops at once. Either way the set as it stands is exported, marked partial.
* **divergence stops early**: the loss's finiteness is accumulated on the device every step and read on
  the host every ``check_every`` steps (and before every checkpoint), so a NaN costs no sync per step and
  at most ``check_every`` wasted steps. The parameters of the last finite check are restored, exported as
  a partial set, and the error names the parameter group and the learning-rate argument to lower.
* **any other exception** (including Lightning's SIGTERM) exports the set as it stands, marked partial.

Under DDP every decision that ends the run is reduced across ranks at the same steps, and nothing here
enters a collective from rank-zero-only code (the export itself is rank-zero-only and collective-free).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ddlight.artifacts import CHECKPOINT_DIR, LAST_CHECKPOINT, SYNTHETIC_FILE


class DivergedError(FloatingPointError):
    """A distillation run produced a non-finite loss or parameter."""


class RunGuard(L.Callback):
    """Periodic checkpoints, graceful Ctrl-C, early divergence stop and partial export (module docstring).

    Args:
        check_every: steps between host reads of the finiteness flags (>= 1).
        checkpoint_every: steps between ``last.ckpt`` saves; 0 or None: no periodic checkpoint.
    """

    def __init__(self, check_every: int = 10, checkpoint_every: int | None = 50) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every = check_every
        self.checkpoint_every = checkpoint_every or 0
        self.checkpoint_dir: Path | None = None
        self.stop_requested = False
        self._bad: torch.Tensor | None = None
        self._snapshot: list[torch.Tensor] = []
        self._snapshot_step = 0
        self._saved_step = -1
        self._old_handler: Any = None

    # ------------------------------------------------------------------------------------ life cycle
    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # Not on_fit_start: a resumed run's parameters are restored only after it.
        if self.checkpoint_every:
            self.checkpoint_dir = Path(pl_module.export_path) / CHECKPOINT_DIR
        self._bad = torch.zeros((), dtype=torch.bool, device=pl_module.device)
        self._take_snapshot(pl_module, int(trainer.global_step))
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        # A second Ctrl-C goes to Python's default: KeyboardInterrupt now, handled by on_exception.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\n[ddlight] interrupt: finishing this step, then a checkpoint and the partial set are written "
            "(Ctrl-C again stops at once)",
            file=sys.stderr,
            flush=True,
        )

    def _restore_handler(self) -> None:
        if self._old_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old_handler)
        self._old_handler = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._restore_handler()

    def teardown(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        self._restore_handler()

    # ------------------------------------------------------------------------------------ every step
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, *args: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and self._bad is not None:
            self._bad |= ~torch.isfinite(loss.detach()).all()
        step = int(trainer.global_step)
        ckpt_due = bool(self.checkpoint_every) and step % self.checkpoint_every == 0
        check_due = step % self.check_every == 0 or ckpt_due or step == trainer.max_steps
        if check_due:
            self._check(trainer, pl_module, step)
        stop = self.stop_requested
        if trainer.world_size > 1:  # one collective per check, at the same steps on every rank
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False)) if check_due else False
        if stop:
            self._stop(trainer, pl_module, step)
        elif ckpt_due:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.checkpoint_dir is not None and self._saved_step != int(trainer.global_step):
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> Path | None:
        """``last.ckpt`` now (every rank must call it: Lightning's save ends in a barrier)."""
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / LAST_CHECKPOINT
        trainer.save_checkpoint(path)
        self._saved_step = int(trainer.global_step)
        return path

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        # Any checkpoint callback (also a user's own ModelCheckpoint) may save between two checks.
        bad = [name for name, ok in self._finite_groups(pl_module) if not ok]
        if bad:
            self._diverged(trainer, pl_module, int(trainer.global_step), bad)

    # ----------------------------------------------------------------------------------- divergence
    @staticmethod
    def _groups(pl_module: Any) -> list[dict[str, Any]]:
        trainer = pl_module.trainer
        return [g for opt in trainer.optimizers for g in opt.param_groups]

    def _finite_groups(self, pl_module: Any, loss_ok: torch.Tensor | None = None) -> list[tuple[str, bool]]:
        """(group name, all finite) per optimizer group, plus ``("loss", ok)`` when ``loss_ok`` is given:
        one stacked tensor, so a check costs one host sync."""
        groups = self._groups(pl_module)
        names = [str(g.get("name", i)) for i, g in enumerate(groups)]
        flags = [torch.stack([torch.isfinite(p).all() for p in g["params"]]).all() for g in groups]
        if loss_ok is not None:
            names, flags = [*names, "loss"], [*flags, loss_ok.to(flags[0].device)]
        return list(zip(names, torch.stack(flags).cpu().tolist(), strict=True))

    def _check(self, trainer: L.Trainer, pl_module: Any, step: int) -> None:
        loss_ok = ~self._bad if self._bad is not None else None
        groups = self._finite_groups(pl_module, loss_ok)
        loss_bad = not groups.pop()[1] if loss_ok is not None else False
        bad = [name for name, ok in groups if not ok]
        diverged = loss_bad or bool(bad)
        if trainer.world_size > 1:
            diverged = bool(trainer.strategy.reduce_boolean_decision(diverged, all=False))
        if diverged:
            self._diverged(trainer, pl_module, step, bad)
        self._take_snapshot(pl_module, step)

    def _take_snapshot(self, pl_module: Any, step: int) -> None:
        with torch.no_grad():
            self._snapshot = [p.detach().clone() for g in self._groups(pl_module) for p in g["params"]]
        self._snapshot_step = step

    def _restore_snapshot(self, pl_module: Any) -> None:
        params = [p for g in self._groups(pl_module) for p in g["params"]]
        with torch.no_grad():
            for p, s in zip(params, self._snapshot, strict=True):
                p.copy_(s)

    def _diverged(self, trainer: L.Trainer, pl_module: Any, step: int, bad_groups: list[str]) -> None:
        self._restore_snapshot(pl_module)
        what = (
            f"parameter group(s) {bad_groups} hold non-finite values"
            if bad_groups
            else "the loss is non-finite"
        )
        reason = f"diverged by step {step}; the set of step {self._snapshot_step}, the last finite check"
        pl_module.stop_reason = reason
        path = pl_module.export(partial=reason, iteration=self._snapshot_step)
        hints = pl_module.lr_hints(bad_groups)
        ckpt = (
            f"; the last checkpoint is {self.checkpoint_dir / LAST_CHECKPOINT}"
            if self._saved_step >= 0
            else ""
        )
        raise DivergedError(
            f"{type(pl_module).__name__} diverged: {what} at step {step} (checked every {self.check_every} "
            f"steps; finite at step {self._snapshot_step}). Lower {hints}. The last finite set was exported "
            f"to {path or pl_module.export_path / SYNTHETIC_FILE} (marked partial){ckpt}."
        )

    # ----------------------------------------------------------------------------- interrupts, errors
    def _stop(self, trainer: L.Trainer, pl_module: Any, step: int) -> None:
        pl_module.stop_reason = f"interrupted (Ctrl-C) at step {step}"
        ckpt = self.save(trainer)  # exports the set too (Distiller.on_save_checkpoint)
        if ckpt is None:
            pl_module.export(partial=pl_module.stop_reason)
        trainer.should_stop = True
        resume = f"; resume with --ckpt_path {ckpt}" if ckpt is not None else ""
        rank_zero_info(f"[ddlight] {pl_module.stop_reason}: partial set in {pl_module.export_path}{resume}")

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore_handler()
        if isinstance(exception, DivergedError) or getattr(pl_module, "images", None) is None:
            return
        step = int(trainer.global_step)
        if isinstance(exception, KeyboardInterrupt):
            reason = f"interrupted (Ctrl-C) during step {step + 1}"
        elif isinstance(exception, SIGTERMException):
            reason = f"terminated (SIGTERM) at step {step}"
        else:
            reason = f"stopped by {type(exception).__name__} after {step} steps"
        pl_module.stop_reason = reason
        try:
            iteration = None
            if not all(ok for _, ok in self._finite_groups(pl_module)):
                self._restore_snapshot(pl_module)
                iteration = self._snapshot_step
            # SIGTERM arrives at a step boundary on every rank, so a checkpoint there is consistent.
            if isinstance(exception, SIGTERMException) and iteration is None and self.save(trainer):
                return
            path = pl_module.export(partial=reason, iteration=iteration)
            if path is not None:
                rank_zero_info(f"[ddlight] {reason}: partial set written to {path}")
        except Exception as err:  # never mask the exception that stopped the run
            rank_zero_warn(f"[ddlight] could not export the partial set after {reason}: {err}")
