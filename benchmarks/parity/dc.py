"""DC: VICO-UoE/DatasetCondensation ``main.py`` (``--method DC``) against :class:`ddlight.methods.DC`.

One outer iteration of both from one identical state: the same synthetic images, the same ConvNet-3
weights (ddlight's state dict mapped onto the reference's ``features.*`` names), the same real batch per
class and per image update. Augmentation is off (DC); :mod:`benchmarks.parity.dsa` runs the same
comparison with one DSA draw injected into both sides.

Their side runs THEIR loop: the ``for ol in range(args.outer_loop):`` block of ``main.py`` (lines
156-215 at 53f63a6) is sliced from the checkout at run time and executed with their ``utils.py``
(``match_loss``, ``epoch``, ``TensorDataset``, ``DiffAugment``); the few lines before it are glue citing
``main.py``. ``get_images`` hands out the pre-drawn real batches, ``time`` the chosen DSA seeds; spies
around ``match_loss``, ``optimizer_img.step`` and ``epoch`` record what their loop computed.

Compared: the per-class matching loss and the image gradient of the first update, the images after 1 and
after 5 updates, the network after the first inner loop and after the last one (``inner_loop`` epochs of
their ``epoch('train', ...)`` on the synthetic set). The synthetic set (K * IPC = 6 images) fits one inner
batch (``batch_train`` 256), the released regime for MNIST up to IPC 25, so the loader's shuffle changes
only the order of a sum.
"""

from __future__ import annotations

import copy
import itertools
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from ddlight.methods.gradient import DC
from ddlight.models import ConvNet
from ddlight.models.init import reinitialize
from ddlight.ops import augment

REPO = "VICO-UoE/DatasetCondensation"
FILE = "main.py"
FUNCTION = "main(): the outer-loop block (for ol in range(args.outer_loop)), utils.match_loss / epoch"
# fp32: one update agrees to ~1e-6; five updates with four inner loops in between compound the rounding
# of two implementations that sum in different orders (vmap over classes vs their loop).
RTOL, ATOL = 1e-5, 1e-6
STATE = {
    "classes": 3,
    "ipc": 2,
    "batch_real": 3,
    "width": 8,
    "depth": 3,
    "size": 28,  # MNIST's path: the first conv pads 3 (28 -> 32)
    "outer_loop": 5,
    "inner_loop": 3,
    "lr_img": 0.1,
    "lr_net": 0.01,
    "batch_train": 256,
}


# ---------------------------------------------------------------------------------------------- state
def ddlight_net(cfg: dict[str, Any]) -> ConvNet:
    return ConvNet(channel=1, num_classes=cfg["classes"], width=cfg["width"], depth=cfg["depth"], im_size=28)


def make_inputs(seed: int = 0, strategy: str = "none") -> dict[str, Any]:
    """The identical starting state: Gaussian images (normalised-pixel scale), a seeded ConvNet."""
    cfg = dict(STATE, strategy=strategy)
    gen = torch.Generator().manual_seed(seed)
    k, ipc, b, ol = cfg["classes"], cfg["ipc"], cfg["batch_real"], cfg["outer_loop"]
    return {
        "config": cfg,
        "images": torch.randn(k * ipc, 1, 28, 28, generator=gen),
        "real": torch.randn(ol, k * b, 1, 28, 28, generator=gen),  # class-major per update
        "net": reinitialize(ddlight_net(cfg), seed + 1).state_dict(),
    }


def reference_name(name: str, depth: int) -> str:
    """ddlight ConvNet ``blocks.d.j.*`` -> the reference's ``features.(4d + j).*`` (conv, norm, act, pool
    per block); the classifier keeps its name."""
    parts = name.split(".")
    if parts[0] != "blocks":
        return name
    d, j = int(parts[1]), int(parts[2])
    if not 0 <= d < depth:
        raise ValueError(f"{name}: block {d} outside depth {depth}")
    return ".".join(["features", str(4 * d + j), *parts[3:]])


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().flatten() for v in state.values()])


# ---------------------------------------------------------------------------------------------- ddlight
def build_ours(inputs: dict[str, Any], method: type[DC] = DC) -> DC:
    """ddlight's distiller in the fixture's state, outside a Trainer (the harness is the step driver)."""
    cfg = inputs["config"]
    net = ddlight_net(cfg)
    net.load_state_dict(inputs["net"])
    model = method(
        net,
        ipc=cfg["ipc"],
        lr_img=cfg["lr_img"],
        lr_net=cfg["lr_net"],
        batch_real=cfg["batch_real"],
        batch_train=cfg["batch_train"],
        outer_loop=cfg["outer_loop"],
        inner_loop=cfg["inner_loop"],
        dsa_strategy=cfg["strategy"],
    )
    model.num_classes = cfg["classes"]
    model.dsa = augment.DSA(cfg["strategy"])
    model.images = nn.Parameter(inputs["images"].clone())
    model.labels = torch.arange(cfg["classes"]).repeat_interleave(cfg["ipc"])
    return model


def ours(
    inputs: dict[str, Any],
    method: type[DC] = DC,
    inject: Callable[[DC, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """ddlight's outer iteration, step by step as ``Distiller.training_step`` runs it: ``losses``, backward,
    ``apply_update`` (the image SGD step, then ``train_network`` unless it was the network's last
    update). ``inject(model, ol)`` installs the DSA draw of update ``ol`` (:mod:`benchmarks.parity.dsa`)."""
    cfg = inputs["config"]
    model = build_ours(inputs, method)
    opt = model.configure_optimizers()
    real_y = torch.arange(cfg["classes"]).repeat_interleave(cfg["batch_real"])
    out: dict[str, torch.Tensor] = {}
    totals = []
    for ol in range(cfg["outer_loop"]):
        if inject is not None:
            inject(model, ol)
        if ol == 0:
            out["loss_per_class"] = model.class_distances(inputs["real"][ol], real_y).detach()
        losses = model.losses(inputs["real"][ol], real_y)
        totals.append(losses["loss"].detach())
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if ol == 0:
            out["image_grad"] = model.images.grad.detach().clone()
        model._position = ol
        model.apply_update(opt, losses)
        if ol == 0:
            out["images_1"] = model.images.detach().clone()
            out["net_after_inner_1"] = flat(model.net.state_dict())
        if ol == cfg["outer_loop"] - 2:
            out["net_after_inner_last"] = flat(model.net.state_dict())
    out["images_5"] = model.images.detach().clone()
    out["loss_per_update"] = torch.stack(totals)
    return out


# ---------------------------------------------------------------------------------------------- theirs
def outer_loop_block(official: Path) -> str:
    """Their ``for ol in range(args.outer_loop):`` block up to ``loss_avg /= ...``, dedented, with the CPU
    patches applied (main.py:156-215 @ 53f63a6)."""
    from benchmarks.parity.official import CPU_PATCHES

    lines = (Path(official) / FILE).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "for ol in range(args.outer_loop):")
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("loss_avg /= (num_classes"))
    block = textwrap.dedent("\n".join(lines[start:end]))
    for old, new in CPU_PATCHES:
        block = block.replace(old, new)
    return block


class SeedClock:
    """Stands in for ``time`` in their loop, whose only use there is the Siamese seed
    ``int(time.time() * 1000) % 100000`` (main.py:186): it hands out the chosen seeds in order."""

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = iter(seeds)

    def time(self) -> float:
        return (next(self.seeds) + 0.5) / 1000.0


def theirs(
    official: Path,
    inputs: dict[str, Any],
    seeds: list[int] | None = None,
    inner_seed: int = 0,
    diff_augment: Callable[..., Callable[..., torch.Tensor]] | None = None,
    datasets: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Their outer iteration from the same state. ``seeds``: one Siamese seed per (update, class) for
    DSA; ``inner_seed`` seeds the global RNG their inner loop shuffles and augments with;
    ``diff_augment(original)`` may wrap their ``DiffAugment`` (the DSA harness records its draws), and
    ``datasets`` collects the images of each inner loop's ``TensorDataset`` (what its batches index)."""
    from benchmarks.parity.official import official_modules

    cfg = inputs["config"]
    k, ipc, b, depth = cfg["classes"], cfg["ipc"], cfg["batch_real"], cfg["depth"]
    with official_modules(official):
        import networks  # noqa: PLC0415 (the authors' modules exist only inside this context)
        import utils  # noqa: PLC0415
    dsa = cfg["strategy"] != "none"
    augment_fn = utils.DiffAugment if diff_augment is None else diff_augment(utils.DiffAugment)
    utils.DiffAugment = augment_fn  # what their epoch() calls for the inner loop's augmentation
    args = SimpleNamespace(
        device="cpu",
        ipc=ipc,
        outer_loop=cfg["outer_loop"],
        inner_loop=cfg["inner_loop"],
        batch_real=b,
        batch_train=cfg["batch_train"],
        lr_net=cfg["lr_net"],
        dis_metric="ours",
        dsa=dsa,
        dsa_strategy=cfg["strategy"] if dsa else "None",
        dsa_param=utils.ParamDiffAug(),
    )
    # utils.get_network's ConvNet branch (utils.py:131) at the fixture's width/depth, weights loaded
    net = networks.ConvNet(
        channel=1, num_classes=k, net_width=cfg["width"], net_depth=depth, net_act="relu",
        net_norm="instancenorm", net_pooling="avgpooling", im_size=(28, 28),
    )  # fmt: skip
    net.load_state_dict({reference_name(n, depth): v for n, v in inputs["net"].items()})
    names = list(inputs["net"])  # ddlight's order: the flattened networks compare entry by entry

    def net_flat() -> torch.Tensor:
        theirs_sd = net.state_dict()
        return flat({n: theirs_sd[reference_name(n, depth)] for n in names})

    # main.py:88-89, 100-102: the set, its labels, the image optimiser, the criterion
    image_syn = inputs["images"].clone().requires_grad_(True)
    label_syn = torch.arange(k).repeat_interleave(ipc)
    optimizer_img = torch.optim.SGD([image_syn], lr=cfg["lr_img"], momentum=0.5)
    criterion = nn.CrossEntropyLoss()
    # main.py:147-153: the network of this outer iteration and its plain SGD
    net.train()
    net_parameters = list(net.parameters())
    optimizer_net = torch.optim.SGD(net.parameters(), lr=args.lr_net)
    optimizer_net.zero_grad()
    args.dc_aug_param = None

    out: dict[str, torch.Tensor] = {}
    per_class, totals, steps = [], [], itertools.count()
    batches = iter([(ol, c) for ol in range(cfg["outer_loop"]) for c in range(k)])

    def get_images(c: int, n: int) -> torch.Tensor:  # main.py:79, the injected batch
        ol, expected = next(batches)
        assert c == expected and n == b, (c, expected, n, b)
        return inputs["real"][ol][c * b : (c + 1) * b]

    def match_loss(gw_syn, gw_real, a):  # noqa: ANN001, ANN202 (their signature)
        d = utils.match_loss(gw_syn, gw_real, a)
        per_class.append(d.detach().clone())
        return d

    original_step = optimizer_img.step

    def step() -> None:
        i = next(steps)
        totals.append(namespace["loss"].detach().clone())  # their summed `loss` of this update
        if i == 0:
            out["image_grad"] = image_syn.grad.detach().clone()
        original_step()
        if i == 0:
            out["images_1"] = image_syn.detach().clone()

    optimizer_img.step = step
    epochs = itertools.count(1)

    def epoch(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        res = utils.epoch(*a, **kw)
        e = next(epochs)
        if e == cfg["inner_loop"]:
            out["net_after_inner_1"] = net_flat()
        if e == cfg["inner_loop"] * (cfg["outer_loop"] - 1):
            out["net_after_inner_last"] = net_flat()
        return res

    def tensor_dataset(images: torch.Tensor, labels: torch.Tensor):  # noqa: ANN202
        if datasets is not None:
            datasets.append(images.detach().clone())
        return utils.TensorDataset(images, labels)

    namespace = {
        "args": args, "net": net, "num_classes": k, "get_images": get_images, "image_syn": image_syn,
        "label_syn": label_syn, "channel": 1, "im_size": (28, 28), "DiffAugment": augment_fn,
        "criterion": criterion, "net_parameters": net_parameters, "match_loss": match_loss,
        "optimizer_img": optimizer_img, "optimizer_net": optimizer_net, "loss_avg": 0, "copy": copy,
        "TensorDataset": tensor_dataset, "torch": torch, "np": np, "epoch": epoch,
        "time": SeedClock(seeds or []),
    }  # fmt: skip
    torch.manual_seed(inner_seed)
    exec(compile(outer_loop_block(official), f"{official}/{FILE}[outer loop]", "exec"), namespace)
    out["images_5"] = image_syn.detach().clone()
    out["loss_per_class"] = torch.stack(per_class[:k])
    out["loss_per_update"] = torch.stack(totals)
    return out


# ---------------------------------------------------------------------------------------------- report
ROWS = (
    ("loss_per_class", "per-class loss, update 1"),
    ("loss_per_update", "loss, updates 1-5"),
    ("image_grad", "image gradient, update 1"),
    ("images_1", "images after 1 update"),
    ("images_5", "images after 5 updates"),
    ("net_after_inner_1", "network after inner loop 1"),
    ("net_after_inner_last", "network after inner loop 4"),
)


def compare_and_write(
    name: str,
    official: Path,
    commit: str,
    inputs: dict[str, Any],
    mine: dict[str, torch.Tensor],
    ref: dict[str, torch.Tensor],
    out: Path | None,
    note: str,
) -> bool:
    from benchmarks.parity.fixtures import manifest, print_rows, write

    ok = print_rows(name, [(label, mine[key], ref[key]) for key, label in ROWS], RTOL)
    if out is not None:
        man = manifest(REPO, commit, FILE, FUNCTION, RTOL, ATOL, note)
        print(f"  fixture: {write(name, man, inputs, ref, out)}")
    return ok


def run(official: Path, commit: str, out: Path | None) -> bool:
    inputs = make_inputs(seed=0)
    ref = theirs(official, inputs)
    mine = ours(inputs)
    note = (
        "DC, augmentation off; 3 classes x IPC 2, 3 real/class per update, ConvNet-3 w8 instance norm on "
        "28x28, outer_loop 5, inner_loop 3, lr_img 0.1 (momentum 0.5), lr_net 0.01, batch_train 256"
    )
    return compare_and_write("dc", official, commit, inputs, mine, ref, out, note)


# ---------------------------------------------------------------------------------------------- equal budget
def official_set(result: Path, like: Path, out: Path, method: str) -> Path:
    """Their ``res_<method>_MNIST_<model>_10ipc.pt`` (``data[0] = [image_syn, label_syn]``, main.py:224) as
    a ddlight ``synthetic.pt``, with the data identity (normalisation, class names) of ``like``, a set
    ddlight distilled on the same data, so that ddlight's evaluator scores both sets the same way."""
    from ddlight.data import SyntheticSet

    images, labels = torch.load(result, weights_only=False)["data"][0]
    ref = SyntheticSet.load(like)
    syn = SyntheticSet(
        images=images.float(), labels=labels.long(), mean=ref.mean, std=ref.std,
        num_classes=ref.num_classes, method=method, dataset=ref.dataset, ipc=ref.ipc,
        class_names=list(ref.class_names), config={"official": str(result)},
    )  # fmt: skip
    return syn.save(out)
