"""``python -m ddlight``: Lightning's CLI in subclass mode, so every stage and data module is chosen by
``class_path`` in YAML and one block or flag swaps it."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from lightning.pytorch.cli import LightningCLI

# Imported so short class names (e.g. ``class_path: BaselineTrainer``) resolve in configs and flags.
import ddlight.data  # noqa: F401
import ddlight.methods  # noqa: F401
import ddlight.models  # noqa: F401
from ddlight.utils import limit_heap_retention

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "ddlight"},
    },
    "enable_progress_bar": True,
}


class DDLightCLI(LightningCLI):
    """Seeded by default (``seed_everything: 0``) so that two identical commands give identical runs."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )


def main(args: Sequence[str] | None = None) -> None:
    limit_heap_retention()  # opt-in via DDLIGHT_MMAP_THRESHOLD (ddlight/utils/memory.py)
    DDLightCLI(args=None if args is None else list(args))
