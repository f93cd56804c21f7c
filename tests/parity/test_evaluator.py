"""The evaluator against the authors' ``evaluate_synset`` (VICO-UoE/DatasetCondensation utils.py): from
the fixture's weights and set, ``schedule: reference`` must end at their weights, logits and test accuracy
(``python -m benchmarks.parity evaluator``), by the plain loop (``Runs.fit``) and by the Lightning path
alike."""

import dataclasses

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.parity.evaluator import ROWS, ours, ours_recipe
from ddlight.evaluation import SyntheticEvaluator
from ddlight.evaluation.recipe import lr_factor, reference_decay_epoch
from tests.helpers.parity import assert_matches, load


def test_evaluate_synset_matches_the_authors():
    fixture = load("evaluator")
    mine = ours(fixture["inputs"])
    for key, label in ROWS:
        assert_matches(fixture, label, mine[key], fixture["outputs"][key])


def test_reference_schedule_is_their_lr_schedule():
    # their Epoch 300 / 1000: range(Epoch + 1) epochs, lr x0.1 after epoch Epoch // 2 + 1 (151 / 501)
    assert reference_decay_epoch(301) == 152 and reference_decay_epoch(1001) == 502
    assert lr_factor("reference", 151, 301) == 1.0 and lr_factor("reference", 152, 301) == 0.1
    assert lr_factor("reference", 501, 1001) == 1.0 and lr_factor("reference", 502, 1001) == 0.1


class _Tiny(L.LightningDataModule):
    """The fixture's set as one batch per epoch and its test images (what the evaluator's setup reads)."""

    name = "mnist"

    def __init__(self, inputs: dict) -> None:
        super().__init__()
        self.inputs, self.num_classes = inputs, inputs["config"]["classes"]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.inputs["images"], self.inputs["labels"]), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            TensorDataset(self.inputs["test_images"], self.inputs["test_labels"]), batch_size=256
        )


def test_lightning_path_matches_the_authors_too():
    """The fresh optimizer at the decay is applied in on_train_epoch_start on this path: same weights."""
    fixture = load("evaluator")
    inputs = fixture["inputs"]
    net, recipe = ours_recipe(inputs["config"], "reference")
    ev = SyntheticEvaluator(net, **dataclasses.asdict(recipe))
    ev.nets[0].load_state_dict(inputs["net"])
    L.Trainer(
        max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    ).fit(ev, _Tiny(inputs))  # fmt: skip
    weights = torch.cat([v.flatten() for v in ev.nets[0].state_dict().values()])
    assert_matches(fixture, "final weights (Lightning)", weights, fixture["outputs"]["weights"])
    assert ev.results["accuracies"][0] == float(fixture["outputs"]["test_accuracy"][0])
