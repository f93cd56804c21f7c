"""DataDAM: ddlight's :class:`~ddlight.methods.DataDAM` against ``main_DataDAM.py``
(DataDistillation/DataDAM), one and five image updates from one identical state, in both configurations:

- ``datadam_code``: ``configs/mnist/datadam_reference_code.yaml`` against what the released loop computes
  (batch-norm ConvNet, ``get_attention(param=1, exp=1)``, ``100 *`` each attention term,
  ``100 * task_balance *`` the embedding term, lr_img 1, the field's DSA strategy with flip).
- ``datadam_paper``: ``configs/mnist/datadam.yaml`` (+ ``configs/overlays/datadam_paper.yaml``, the same
  values) against the authors' pieces assembled as the paper states the loss (instance norm, p = 4,
  attention weight 1, lambda = 0.01, no x100), with the config's lr_img and DSA strategy.

``main_DataDAM.py`` keeps its step inside ``main()``, including the activation hooks and the ``error``
helper; the hooks and the ``MSE_B`` line are reproduced here in a few lines with their line numbers. Their
``get_attention``, ``DiffAugment`` and ``networks.ConvNet`` are imported from the checkout. ddlight's side
is :func:`benchmarks.parity.dm.ddlight_steps` on a ``DataDAM`` built from the config's own values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from benchmarks.parity import fixtures
from benchmarks.parity.dm import (
    augment_pair,
    compared,
    ddlight_net,
    ddlight_steps,
    initial_state,
    kept,
    their_net,
    their_update,
)
from benchmarks.parity.official import load
from ddlight.data import MNISTDataModule
from ddlight.ops.augment import strategy_for

REPO = "DataDistillation/DataDAM"
ROOT = Path(__file__).resolve().parents[2]
RTOL, ATOL = 1e-5, 1e-6
# fixture name -> (the ddlight configs it claims to follow, their network's norm)
CONFIGS = {
    "datadam_code": (("configs/mnist/datadam_reference_code.yaml",), "batchnorm"),
    "datadam_paper": (("configs/mnist/datadam.yaml", "configs/overlays/datadam_paper.yaml"), "instancenorm"),
}
# Init args that size or schedule the run, not the step (the fixture is narrow and injects a network
# and a DSA draw per step).
NOT_STEP = {"net", "ipc", "batch_real", "grid_every", "steps_per_network", "init", "export_dir"}


def config_args(name: str) -> dict[str, Any]:
    """The DataDAM init args the fixture's configs set (later configs override earlier ones)."""
    args: dict[str, Any] = {}
    for cfg in CONFIGS[name][0]:
        args.update(yaml.safe_load((ROOT / cfg).read_text())["model"]["init_args"])
    return {k: v for k, v in args.items() if k not in NOT_STEP}


def ddlight_datadam(name: str, inputs: dict[str, Any]):
    """ddlight's DataDAM with the configuration's values at the fixture's size."""
    from ddlight.methods import DataDAM

    return DataDAM(
        ddlight_net(inputs, CONFIGS[name][1]),
        ipc=inputs["ipc"],
        batch_real=inputs["batch_real"],
        **config_args(name),
    )


def mse_b(real: torch.Tensor, syn: torch.Tensor, k: int, batch_real: int, ipc: int) -> torch.Tensor:
    """``error(real, syn, err_type="MSE_B")`` of main_DataDAM.py:253-254 (a closure inside ``main()``)."""
    return torch.sum(
        (torch.mean(real.reshape(k, batch_real, -1), dim=1) - torch.mean(syn.reshape(k, ipc, -1), dim=1)) ** 2
    )


def relu_outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``net(x)[0]`` and every ReLU's output, as their forward hooks collect them (main_DataDAM.py:150-177:
    a hook on each ``nn.ReLU`` of ``net.features`` storing ``op.clone()``)."""
    acts: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, op: acts.append(op.clone()))
        for m in net.features
        if isinstance(m, nn.ReLU)
    ]
    try:
        emb = net(x)[0]
    finally:
        for h in hooks:
            h.remove()
    return emb, acts


def reference_steps(utils: Any, networks: Any, state: dict[str, Any], name: str) -> tuple[dict, list[dict]]:
    """Their DataDAM iterations (main_DataDAM.py:228-317) from ``state`` with the weights, power and lr of
    configuration ``name``; returns their outputs and the DSA draws they made."""
    code = name == "datadam_code"
    cfg = config_args(name)
    k, ipc, br = state["classes"], state["ipc"], state["batch_real"]
    # the released loop: 100 * each attention MSE, 100 * task_balance (0.01) * the embedding MSE, exp=1;
    # the paper: attention weight 1, lambda = 0.01, p = 4 (main_DataDAM.py:303-310 with the paper's values)
    w_att, w_emb, exp = (100.0, 100 * 0.01, 1) if code else (1.0, 0.01, 4)
    image_syn = state["images"].clone().requires_grad_(True)
    optimizer_img = torch.optim.SGD([image_syn], lr=cfg["lr_img"], momentum=0.5)  # main_DataDAM.py:141
    out: dict[str, list[torch.Tensor]] = {"loss": [], "grad": [], "images": []}
    draws = []
    for step, sd in enumerate(state["nets"]):
        net = their_net(networks, state, CONFIGS[name][1], sd)
        loss = torch.tensor(0.0)
        reals, syns, ops, us = [], [], [], []
        for c in range(k):  # main_DataDAM.py:273-283
            img_syn = image_syn[c * ipc : (c + 1) * ipc].reshape(ipc, *image_syn.shape[1:])
            r, s, op, u = augment_pair(
                utils, state["real"][step][c], img_syn, state["seeds"][step][c], state["strategy"]
            )
            reals.append(r)
            syns.append(s)
            ops.append(op)
            us.append(u)
        output_real, real_acts = relu_outputs(net, torch.cat(reals))  # main_DataDAM.py:290-297
        output_real = output_real.detach()
        output_syn, syn_acts = relu_outputs(net, torch.cat(syns))
        for layer in range(len(real_acts) - 1):  # main_DataDAM.py:301-308
            real_attention = utils.get_attention(real_acts[layer].detach(), param=1, exp=exp, norm="l2")
            syn_attention = utils.get_attention(syn_acts[layer], param=1, exp=exp, norm="l2")
            loss += w_att * mse_b(real_attention, syn_attention, k, br, ipc)
        loss += w_emb * mse_b(output_real, output_syn, k, br, ipc)  # main_DataDAM.py:310-313
        their_update(optimizer_img, image_syn, loss, out)
        draws.append({"op": torch.cat(ops), "u": torch.cat(us)})
    return out, draws


def run(official: Path, commit: str, out: Path | None) -> bool:
    utils = load(official, "utils")
    networks = load(official, "networks")
    ok = True
    for name, (configs, norm) in CONFIGS.items():
        strategy = strategy_for(config_args(name).get("dsa_strategy", "auto"), MNISTDataModule.flip_invariant)
        state = initial_state(networks, norm, strategy)
        theirs, draws = reference_steps(utils, networks, state, name)
        inputs = {**state, "draws": draws}
        ours = ddlight_steps(ddlight_datadam(name, inputs), inputs)
        ok &= fixtures.print_rows(name, compared(kept(ours), kept(theirs), state["images"]), RTOL, ATOL)
        if out is not None:
            what = "the released loop" if name == "datadam_code" else "the paper's loss from their pieces"
            man = fixtures.manifest(
                REPO,
                commit,
                "main_DataDAM.py",
                "main() iteration, utils.get_attention, utils.DiffAugment, networks.ConvNet",
                RTOL,
                ATOL,
                f"{what}; ddlight: {' + '.join(configs)}; 5 steps, a new network and real batch per step; "
                f"DSA {strategy}, the reference's draws injected",
            )
            print("  wrote", fixtures.write(name, man, inputs, kept(theirs), out))
    return ok
