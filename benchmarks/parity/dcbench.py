"""DC-Bench's evaluation loop: justincui03/dc_benchmark ``EvaluatorUtils.evaluate_synset`` (evaluator/
evaluator_utils.py; ``evaluate_synset_dataset`` holds the loop) against ddlight's DC-Bench preset
(``configs/mnist/evaluate_dcbench.yaml``: ``schedule: reference``, ``epochs: 1001``).

Read from their code: ``for ep in range(Epoch+1)`` (1001 epochs for ``--dsa``'s ``epoch_eval_train =
1000``), ``lr_schedule = [Epoch//2+1]``, and at that epoch ``lr *= 0.1`` and ``optimizer =
torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)``: a new optimizer, so
the momentum buffers start again from zero; a test pass at ``ep % eval_gap == 0`` (epoch 0) changes no
weight. This is DC's ``evaluate_synset`` loop, so ddlight's one ``reference`` schedule serves both; here
the same small comparison as :mod:`benchmarks.parity.evaluator` (Epoch 6, augmentation off: their
``args.dsa = False, args.aug = '', args.dc_aug_param = None``) is run against DC-Bench's function.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from benchmarks.parity.evaluator import compare_and_write, outputs_of, their_net

REPO = "justincui03/dc_benchmark"
FILE = "evaluator/evaluator_utils.py"
FUNCTION = "EvaluatorUtils.evaluate_synset -> evaluate_synset_dataset (with epoch)"


def theirs(official: Path, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    from benchmarks.parity.official import official_modules

    with official_modules(official):
        eu = importlib.import_module("evaluator.evaluator_utils").EvaluatorUtils
    cfg = inputs["config"]
    net = their_net(official, inputs, "networks.convnet")
    args = SimpleNamespace(
        device="cpu", lr_net=cfg["lr"], epoch_eval_train=cfg["epoch"], batch_train=256, dsa=False,
        aug="", dc_aug_param=None, optimizer="sgd", eval_gap=1001,
    )  # fmt: skip
    test = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs["test_images"], inputs["test_labels"]), batch_size=256
    )
    net, _, acc_test = eu.evaluate_synset(0, net, inputs["images"], inputs["labels"], test, args, logging)
    return outputs_of(net, inputs, acc_test)


def run(official: Path, commit: str, out: Path | None) -> bool:
    note = (
        "DC-Bench's evaluate_synset, Epoch 6 (7 epochs, lr x0.1 + fresh SGD after epoch 4), 12 images, "
        "ConvNet-3 w8 (DC-Bench's networks/convnet.py), augmentation off, batch 256; ddlight "
        "SyntheticEvaluator(epochs=7, schedule='reference'), the preset's option at Epoch 1000 -> 1001"
    )
    return compare_and_write("dcbench", REPO, FILE, FUNCTION, commit, theirs, official, out, note)
