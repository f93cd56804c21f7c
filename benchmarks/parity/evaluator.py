"""The evaluator: VICO-UoE/DatasetCondensation ``utils.evaluate_synset`` against
:class:`ddlight.evaluation.SyntheticEvaluator` with ``schedule: reference``.

Their function is called as it is (``evaluate_synset(it_eval, net, images_train, labels_train,
testloader, args)``, utils.py:337); ddlight's evaluation loop (``Runs.fit``) runs on the same tensors. Same
initial weights (ddlight's run 0 mapped onto their ``ConvNet``), augmentation off on both sides (their
``args.dsa = False, args.dc_aug_param = None``: ``augment`` returns the batch untouched; the DSA ops are
proven separately), one batch per epoch (12 images, ``batch_train`` 256: the loaders' shuffles only
reorder a sum, the released regime up to 256 images). Their ``Epoch`` 6 is 7 epochs trained, lr 0.01 then
0.001 from epoch 5 (``lr_schedule = [Epoch//2+1]``) with a fresh SGD: ddlight's ``epochs: 7, schedule:
reference``. Compared: the final weights, the test logits and the test accuracy. The harness also reports
ddlight's ``schedule: step`` at the same length, a named deviation (``docs/parity.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.parity.dc import flat, reference_name
from ddlight.evaluation import Recipe, Runs
from ddlight.models import ConvNet

REPO = "VICO-UoE/DatasetCondensation"
FILE = "utils.py"
FUNCTION = "evaluate_synset (with epoch)"
RTOL, ATOL = 1e-5, 1e-6
STATE = {"classes": 3, "per_class": 4, "test_per_class": 10, "width": 8, "depth": 3, "epoch": 6, "lr": 0.01}
ROWS = (
    ("weights", "final weights"),
    ("test_logits", "test logits"),
    ("test_accuracy", "test accuracy"),
)


def make_inputs(seed: int = 0) -> dict[str, Any]:
    """A tiny set and a test set near it (Gaussian class means + noise), and the initial weights."""
    cfg = dict(STATE)
    gen = torch.Generator().manual_seed(seed)
    k = cfg["classes"]
    means = torch.randn(k, 1, 28, 28, generator=gen)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(k).repeat_interleave(n)
        return means[y] + 1.5 * torch.randn(k * n, 1, 28, 28, generator=gen), y

    images, labels = draw(cfg["per_class"])
    test_images, test_labels = draw(cfg["test_per_class"])
    ev = ours_evaluator(cfg, "reference", seed)
    return {
        "config": cfg,
        "images": images,
        "labels": labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "net": ev.nets[0].state_dict(),
    }


def ours_recipe(cfg: dict[str, Any], schedule: str, seed: int = 0) -> tuple[ConvNet, Recipe]:
    """Their ``Epoch`` is ``epochs = Epoch + 1`` under ``reference``; ``step`` runs ``Epoch`` epochs, as a
    config written from the paper's "300 epochs" does."""
    net = ConvNet(channel=1, num_classes=cfg["classes"], width=cfg["width"], depth=cfg["depth"], im_size=28)
    epochs = cfg["epoch"] + 1 if schedule == "reference" else cfg["epoch"]
    return net, Recipe(num_runs=1, epochs=epochs, lr=cfg["lr"], schedule=schedule, dsa=False, seed=seed)


def ours_evaluator(cfg: dict[str, Any], schedule: str, seed: int = 0) -> Runs:
    return Runs(*ours_recipe(cfg, schedule, seed))


def test_loader(inputs: dict[str, Any]) -> DataLoader:
    return DataLoader(TensorDataset(inputs["test_images"], inputs["test_labels"]), batch_size=256)


def ours(inputs: dict[str, Any], schedule: str = "reference") -> dict[str, torch.Tensor]:
    """ddlight's evaluator from the fixture's weights, on the fixture's set (the fixture test's call)."""
    cfg = inputs["config"]
    ev = ours_evaluator(cfg, schedule)
    ev.nets[0].load_state_dict(inputs["net"])
    res = ev.fit(inputs["images"], inputs["labels"], test_loader(inputs), "mnist", batch_size=256)
    net = ev.nets[0].eval()
    with torch.no_grad():
        logits = net(inputs["test_images"])
    return {
        "weights": flat(net.state_dict()),
        "test_logits": logits,
        "test_accuracy": torch.tensor(res["accuracies"], dtype=torch.float64),
    }


def their_net(official: Path, inputs: dict[str, Any], module: str = "networks") -> torch.nn.Module:
    """Their ``ConvNet`` (utils.get_network's ConvNet branch at the fixture's width) with the weights."""
    from benchmarks.parity.official import load

    cfg = inputs["config"]
    networks = load(official, module)
    net = networks.ConvNet(
        channel=1, num_classes=cfg["classes"], net_width=cfg["width"], net_depth=cfg["depth"],
        net_act="relu", net_norm="instancenorm", net_pooling="avgpooling", im_size=(28, 28),
    )  # fmt: skip
    net.load_state_dict({reference_name(n, cfg["depth"]): v for n, v in inputs["net"].items()})
    return net


def outputs_of(net: torch.nn.Module, inputs: dict[str, Any], accuracy: float) -> dict[str, torch.Tensor]:
    depth = inputs["config"]["depth"]
    sd = net.state_dict()
    net.eval()
    with torch.no_grad():
        logits = net(inputs["test_images"])
    return {
        "weights": flat({n: sd[reference_name(n, depth)] for n in inputs["net"]}),
        "test_logits": logits,
        "test_accuracy": torch.tensor([accuracy], dtype=torch.float64),
    }


def theirs(official: Path, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    from benchmarks.parity.official import load

    utils = load(official, "utils")
    cfg = inputs["config"]
    net = their_net(official, inputs)
    args = SimpleNamespace(
        device="cpu", lr_net=cfg["lr"], epoch_eval_train=cfg["epoch"], batch_train=256, dsa=False,
        dc_aug_param=None,
    )  # fmt: skip
    net, _, acc_test = utils.evaluate_synset(
        0, net, inputs["images"], inputs["labels"], test_loader(inputs), args
    )
    return outputs_of(net, inputs, acc_test)


def compare_and_write(
    name: str,
    repo: str,
    file: str,
    function: str,
    commit: str,
    theirs_fn: Callable[[Path, dict[str, Any]], dict[str, torch.Tensor]],
    official: Path,
    out: Path | None,
    note: str,
) -> bool:
    from benchmarks.parity.fixtures import manifest, print_rows, write

    logging.getLogger().setLevel(logging.WARNING)
    inputs = make_inputs()
    ref = theirs_fn(official, inputs)
    mine = ours(inputs)
    ok = print_rows(name, [(label, mine[key], ref[key]) for key, label in ROWS], RTOL)
    step = ours(inputs, "step")
    print_rows(f"{name} vs ddlight schedule 'step' (named deviation)", [
        (label, step[key], ref[key]) for key, label in ROWS
    ], RTOL)  # fmt: skip
    if out is not None:
        man = manifest(repo, commit, file, function, RTOL, ATOL, note)
        print(f"  fixture: {write(name, man, inputs, ref, out)}")
    return ok


def run(official: Path, commit: str, out: Path | None) -> bool:
    note = (
        "evaluate_synset, Epoch 6 (7 epochs, lr x0.1 + fresh SGD after epoch 4), 12 images (3 classes), "
        "ConvNet-3 w8, augmentation off, batch 256; ddlight SyntheticEvaluator(epochs=7, "
        "schedule='reference')"
    )
    return compare_and_write("evaluator", REPO, FILE, FUNCTION, commit, theirs, official, out, note)
