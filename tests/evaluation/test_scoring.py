"""The evaluator's scored protocol: lr search on validation data only, baselines beside the set, the
full-data cache, and the same numbers when a set is scored twice."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

import ddlight.evaluation.evaluator as evaluator_module
from ddlight.data import SyntheticDataModule, SyntheticSet
from ddlight.evaluation import Recipe, Runs, SyntheticEvaluator
from ddlight.evaluation.scoring import Baselines
from tests.helpers.builders import TinyDigits, tiny_net


class WatchedDigits(TinyDigits):
    """TinyDigits whose test loader fails if it is iterated while a learning rate is being chosen."""

    selecting = False

    def test_dataloader(self):
        loader = super().test_dataloader()
        owner = type(self)

        class Watched:
            def __iter__(self):
                assert not owner.selecting, "the test set was read while the learning rate was chosen"
                return iter(loader)

        return Watched()


def tiny_set(tmp_path, soft: bool = False):
    real = WatchedDigits()
    real.setup()
    idx = torch.cat([torch.nonzero(real.train_labels == c).flatten()[:2] for c in range(4)])
    labels = real.train_labels[idx]
    syn = SyntheticSet(
        images=real.normalize(real.train_images[idx]),
        labels=torch.nn.functional.one_hot(labels, 4).float() * 3 if soft else labels,
        mean=real.mean,
        std=real.std,
        num_classes=4,
        method="real",
        dataset="watcheddigits",
        ipc=2,
        test_sha256=real.identity()["test_sha256"],
    )
    return syn.save(tmp_path / "synthetic.pt")


def scored(tmp_path, path, **kw) -> dict:
    args = dict(num_runs=2, epochs=2, dsa_strategy="none", results_path=str(tmp_path / "res.json"))
    args.update(kw)
    ev = SyntheticEvaluator(tiny_net(), **args)
    dm = SyntheticDataModule(str(path), WatchedDigits(), batch_size=8)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, max_epochs=-1,
    )  # fmt: skip
    trainer.fit(ev, datamodule=dm)
    return json.loads((tmp_path / "res.json").read_text())


def test_lr_search_chooses_on_validation_and_never_reads_the_test_set(tmp_path, monkeypatch):
    real_search = evaluator_module.search_lr
    seen = {}

    def watched_search(net, recipe, images, labels, val_loader, grid, dataset):
        WatchedDigits.selecting = True
        try:
            seen["val"] = torch.cat([y for _, y in val_loader])
            return real_search(net, recipe, images, labels, val_loader, grid, dataset)
        finally:
            WatchedDigits.selecting = False

    monkeypatch.setattr(evaluator_module, "search_lr", watched_search)
    res = scored(tmp_path, tiny_set(tmp_path), lr="search", lr_grid=[0.001, 0.05, 0.2])
    table = res["lr_search"]["val_accuracy"]
    assert list(table) == ["0.001", "0.05", "0.2"]
    assert res["lr"] == float(max(table, key=table.get)) and res["lr_source"].startswith("searched")
    # the validation split: 10 % of each class of the training set, not the 40 test images
    assert torch.bincount(seen["val"], minlength=4).tolist() == [4, 4, 4, 4]
    assert res["lr_search"]["validation"]["images"] == 16 and res["accuracy_at"].startswith("final epoch")


def test_baselines_scores_and_cache_give_the_same_numbers_twice(tmp_path):
    path = tiny_set(tmp_path)
    base = Baselines(full_epochs=1, cache_dir=str(tmp_path / "cache"))
    first = scored(tmp_path, path, baselines=base)
    runs = first["baselines"]
    assert set(runs) == {"full", "random", "set_no_aug", "random_no_aug", "set_hard"}
    assert runs["full"]["cached"] is False and runs["full"]["images"] == 144  # 160 less the validation 16
    assert runs["full"]["epochs"] == 1 and runs["random"]["epochs"] == 2 and not runs["set_no_aug"]["dsa"]
    s = first["scores"]
    assert s["HLR"] == pytest.approx(runs["full"]["mean"] - first["mean"])  # a hard set is its own hard run
    assert s["IOR"] == pytest.approx(first["mean"] - runs["random"]["mean"])
    assert 0.0 <= s["LRS"] <= 1.0 and 0.0 <= s["ARS"] <= 1.0 and "LRS" in first["formulas"]
    second = scored(tmp_path, path, baselines=base)
    assert second["baselines"]["full"]["cached"] is True
    assert second["scores"] == first["scores"]
    assert second["baselines"]["random"]["accuracies"] == runs["random"]["accuracies"]


def test_a_soft_set_is_scored_against_teacher_relabelled_random_images(tmp_path):
    base = Baselines(full_epochs=1, cache_dir=str(tmp_path / "cache"))
    res = scored(tmp_path, tiny_set(tmp_path, soft=True), baselines=base, lr=0.01)
    runs = res["baselines"]
    assert (
        res["labels"] == "soft"
        and runs["random"]["labels"] == "soft"
        and runs["set_hard"]["labels"] == "hard"
    )
    assert res["protocol"]["random_labels"].startswith("mean logits of the full-data networks")
    assert res["scores"]["HLR"] == pytest.approx(runs["full"]["mean"] - runs["set_hard"]["mean"])


def test_search_and_baselines_refuse_a_plain_loop_without_validation_data():
    ev = Runs(tiny_net(), Recipe(lr="search"))
    with pytest.raises(ValueError, match="needs a validation split"):
        ev.fit(torch.zeros(4, 1, 12, 12), torch.arange(4), [], "tinydigits")
