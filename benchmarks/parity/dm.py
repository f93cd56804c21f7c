"""DM: ddlight's :class:`~ddlight.methods.DM` against ``main_DM.py`` (VICO-UoE/DatasetCondensation), one
and five image updates from one identical state.

``main_DM.py`` is a script: its iteration lives inside ``main()``. The step is rebuilt here from the
authors' own pieces in their loop's order: their ``networks.ConvNet`` (a narrow one, so that the fixture
stays small), their ``DiffAugment`` with a per-class seed on both sides (the same draw injected into
ddlight through :meth:`DSA.from_uniforms`, see :mod:`benchmarks.parity.dsa_ops`), their ``embed``, the
loss line and ``torch.optim.SGD(lr_img, momentum=0.5)``. Every step draws a new network and real batch,
as their loop does. The ddlight side (:func:`ddlight_steps`, also what ``tests/parity`` runs) is the
real ``DM`` with its released defaults (lr_img, momentum), only its network and DSA draw are injected.

This module and :mod:`benchmarks.parity.datadam` share :func:`ddlight_steps` and :func:`to_ddlight`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.parity import fixtures
from benchmarks.parity.dsa_ops import reference_siamese
from benchmarks.parity.official import load
from ddlight.data import MNISTDataModule
from ddlight.methods.matching import RandomNetworkMatching
from ddlight.models import ConvNet
from ddlight.ops.augment import DSA, FIELD_STRATEGY, strategy_for

REPO = "VICO-UoE/DatasetCondensation"
RTOL, ATOL = 1e-5, 1e-6
# A narrow ConvNet-3 on 28x28 digits (the padding-3 first conv of the field), 3 classes, 2 images per
# class, 3 real per class: the released network's structure at a fixture's size.
SIZES = dict(classes=3, ipc=2, batch_real=3, width=8, depth=3, channel=1, im=28, steps=5)


def to_ddlight(theirs: dict[str, torch.Tensor], ours: nn.Module) -> dict[str, torch.Tensor]:
    """Their ConvNet's state dict under ddlight's names: ``features.<i>`` (conv, norm, act, pool per block)
    is ``blocks.<d>.<0|1>``, ``classifier`` is ``classifier``. Matched in registration order, with
    every shape checked, so a layout change on either side fails here rather than loading wrong weights."""
    ours_keys = list(ours.state_dict())
    if len(ours_keys) != len(theirs):
        raise ValueError(f"{len(theirs)} tensors in theirs, {len(ours_keys)} in ddlight's ConvNet")
    out = {}
    for (tk, tv), ok in zip(theirs.items(), ours_keys, strict=True):
        if tk.rsplit(".", 1)[-1] != ok.rsplit(".", 1)[-1] or tv.shape != ours.state_dict()[ok].shape:
            raise ValueError(f"their {tk} {tuple(tv.shape)} does not map to ddlight's {ok}")
        out[ok] = tv
    return out


def ddlight_steps(model: RandomNetworkMatching, inputs: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
    """Run ``model`` (a DM or DataDAM, its hparams as constructed) from the fixture's state: per step, load
    that step's network, inject that step's per-class DSA draw, take ``model.losses`` on that step's real
    batch and let the model's own optimizer (``configure_optimizers``) update the images. The backward
    and step are ``Distiller.training_step``'s, without a trainer."""
    k, ipc = inputs["classes"], inputs["ipc"]
    model.images = nn.Parameter(inputs["images"].clone())
    model.labels = torch.arange(k).repeat_interleave(ipc)
    model.num_classes = k
    model.dsa = DSA(strategy_for(model.hparams.dsa_strategy, MNISTDataModule.flip_invariant))
    opt = model.configure_optimizers()
    real_labels = torch.arange(k).repeat_interleave(inputs["batch_real"])
    out: dict[str, list[torch.Tensor]] = {"loss": [], "grad": [], "images": []}
    for net, real, draw in zip(inputs["nets"], inputs["real"], inputs["draws"], strict=True):
        model.net.load_state_dict(to_ddlight(net, model.net))
        model.net.train()
        params = model.dsa.from_uniforms(draw["op"], draw["u"])
        model.siamese_params = lambda params=params: params  # the injected draw
        losses = model.losses(real.flatten(0, 1), real_labels)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        out["loss"].append(losses["loss"].detach())
        out["grad"].append(model.images.grad.detach().clone())
        out["images"].append(model.images.detach().clone())
    return out


def ddlight_net(inputs: dict[str, Any], norm: str) -> ConvNet:
    return ConvNet(
        channel=inputs["channel"],
        num_classes=inputs["classes"],
        width=inputs["width"],
        depth=inputs["depth"],
        norm=norm,
        im_size=inputs["im"],
    )


def ddlight_dm(inputs: dict[str, Any]):
    """ddlight's DM with its defaults (the released lr_img, momentum) and the released DSA strategy."""
    from ddlight.methods import DM

    return DM(
        ddlight_net(inputs, "instancenorm"),
        ipc=inputs["ipc"],
        batch_real=inputs["batch_real"],
        dsa_strategy=FIELD_STRATEGY,
    )


def initial_state(networks: Any, norm: str, strategy: str) -> dict[str, Any]:
    """Synthetic images, per step a network (their ConvNet, default init from a seed) and a real batch,
    and the per-class DSA seeds."""
    s = SIZES
    gen = torch.Generator().manual_seed(0)
    shape = (s["channel"], s["im"], s["im"])
    nets = []
    for step in range(s["steps"]):
        torch.manual_seed(100 + step)  # their ConvNet's default init, seeded
        net = their_convnet(networks, s, norm)
        nets.append({k: v.clone() for k, v in net.state_dict().items()})
    return {
        **s,
        "strategy": strategy,
        "images": torch.randn(s["classes"] * s["ipc"], *shape, generator=gen),
        "real": [torch.randn(s["classes"], s["batch_real"], *shape, generator=gen) for _ in nets],
        "seeds": [[1000 * step + 17 * c + 5 for c in range(s["classes"])] for step in range(s["steps"])],
        "nets": nets,
    }


def augment_pair(utils: Any, real: torch.Tensor, syn: torch.Tensor, seed: int, strategy: str):
    """Both sides of one class through their ``DiffAugment`` with one seed (main_DM.py:156-158,
    main_DataDAM.py:278-280), and the draw as (op, u) for ddlight."""
    real_aug, op, u = reference_siamese(utils, real, seed, strategy)
    syn_aug = utils.DiffAugment(syn, strategy, seed=seed, param=utils.ParamDiffAug())
    return real_aug, syn_aug, op, u


def their_convnet(networks: Any, sizes: dict[str, Any], norm: str) -> nn.Module:
    """Their ``networks.ConvNet`` at the fixture's sizes (their ``get_network`` hard-codes width 128)."""
    return networks.ConvNet(
        channel=sizes["channel"],
        num_classes=sizes["classes"],
        net_width=sizes["width"],
        net_depth=sizes["depth"],
        net_act="relu",
        net_norm=norm,
        net_pooling="avgpooling",
        im_size=(sizes["im"], sizes["im"]),
    )


def their_update(
    optimizer_img: torch.optim.Optimizer, image_syn: torch.Tensor, loss: torch.Tensor, out: dict
) -> None:
    """Their update (main_DM.py:191-193, main_DataDAM.py:315-317), and what the fixture records of it."""
    optimizer_img.zero_grad()
    loss.backward()
    optimizer_img.step()
    out["loss"].append(loss.detach())
    out["grad"].append(image_syn.grad.detach().clone())
    out["images"].append(image_syn.detach().clone())


def their_net(networks: Any, state: dict[str, Any], norm: str, sd: dict[str, torch.Tensor]) -> nn.Module:
    """Their ``networks.ConvNet`` at the fixture's size with the step's weights, frozen, in train mode
    (main_DM.py:142-145, main_DataDAM.py:230-233)."""
    net = their_convnet(networks, state, norm)
    net.load_state_dict(sd)
    net.train()
    for p in net.parameters():
        p.requires_grad = False
    return net


def reference_steps(utils: Any, networks: Any, state: dict[str, Any]) -> tuple[dict, list[dict]]:
    """Their DM iterations (main_DM.py:141-194, the ConvNet branch) from ``state``; returns their
    outputs and the DSA draws they made."""
    k, ipc = state["classes"], state["ipc"]
    image_syn = state["images"].clone().requires_grad_(True)
    optimizer_img = torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)  # main_DM.py:112, lr_img default 1
    out: dict[str, list[torch.Tensor]] = {"loss": [], "grad": [], "images": []}
    draws = []
    for step, sd in enumerate(state["nets"]):
        embed = their_net(networks, state, "instancenorm", sd).embed
        loss = torch.tensor(0.0)
        ops, us = [], []
        for c in range(k):  # main_DM.py:151-163
            img_real = state["real"][step][c]
            img_syn = image_syn[c * ipc : (c + 1) * ipc].reshape(ipc, *image_syn.shape[1:])
            img_real, img_syn, op, u = augment_pair(
                utils, img_real, img_syn, state["seeds"][step][c], state["strategy"]
            )
            ops.append(op)
            us.append(u)
            output_real = embed(img_real).detach()
            output_syn = embed(img_syn)
            loss += torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
        their_update(optimizer_img, image_syn, loss, out)
        draws.append({"op": torch.cat(ops), "u": torch.cat(us)})
    return out, draws


def kept(out: dict[str, list[torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
    """What the fixture keeps of the authors' outputs: every loss, the gradient of step 1, the images
    after steps 1 and 5 (the compared quantities; the rest would only grow the file)."""
    return {"loss": out["loss"], "grad": out["grad"][:1], "images": [out["images"][0], out["images"][-1]]}


def compared(ours: dict, theirs: dict, start: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The compared quantities of two :func:`kept` outputs. The updates (images minus the start) are
    compared besides the images: relative to the update, not to the pixel values, a wrong gradient
    cannot hide behind a small learning rate."""
    n = len(theirs["loss"])
    return [
        *((f"loss, step {i + 1}", ours["loss"][i], theirs["loss"][i]) for i in range(n)),
        ("image gradient, step 1", ours["grad"][0], theirs["grad"][0]),
        ("images after 1 step", ours["images"][0], theirs["images"][0]),
        ("update after 1 step", ours["images"][0] - start, theirs["images"][0] - start),
        (f"images after {n} steps", ours["images"][-1], theirs["images"][-1]),
        (f"update after {n} steps", ours["images"][-1] - start, theirs["images"][-1] - start),
    ]


def run(official: Path, commit: str, out: Path | None) -> bool:
    utils = load(official, "utils")
    networks = load(official, "networks")
    state = initial_state(networks, "instancenorm", FIELD_STRATEGY)
    theirs, draws = reference_steps(utils, networks, state)
    inputs = {**state, "draws": draws}
    ours = ddlight_steps(ddlight_dm(inputs), inputs)
    ok = fixtures.print_rows("dm", compared(kept(ours), kept(theirs), state["images"]), RTOL, ATOL)
    if out is not None:
        man = fixtures.manifest(
            REPO,
            commit,
            "main_DM.py",
            "main() iteration (ConvNet branch), utils.DiffAugment, networks.ConvNet",
            RTOL,
            ATOL,
            "5 steps, a new network and real batch per step; the reference's DSA draws injected",
        )
        print("  wrote", fixtures.write("dm", man, inputs, kept(theirs), out))
    return ok
