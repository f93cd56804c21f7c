"""MTT (GeorgeCazenavette/mtt-distillation) against ddlight's trajectory matching, and the glue that DATM's
and PAD's comparisons (:mod:`.datm`, :mod:`.pad`) share.

The authors' outer step lives inside ``main()`` of ``distill.py``; it is executed here as a sliced copy of
their source, read at run time (``distill.py`` from the line ``student_net = get_network(args.model`` to
``optimizer_lr.step()``, lines 294-396 at 50dccea), in a namespace that supplies what ``main()`` built
before the loop: their ``ReparamModule`` and ``networks.ConvNet`` (imported from the checkout, CPU
patches only), the synthetic images, labels and ``syn_lr``, their two SGD optimizers (momentum 0.5, lines
138-139), their criterion, and an in-memory replay buffer in their layout (a list of trajectories, each a
list of per-epoch lists of parameter tensors: ``buffer.py`` appends the initial parameters, then one entry
per epoch). ``args.load_all`` is True so the expert comes from ``np.random.randint`` and augmentation is
off (``args.dsa`` False): the DSA ops are proven separately (Parity I, ``dsa_ops``), and the student
steps then differ only in what this comparison is about. The three random draws of each iteration (the
expert, the start epoch, the minibatch permutations) are recorded as their code makes them and handed to
ddlight as the iteration's plan; the permutations come from a dedicated seeded generator so that the test
can also check ddlight's own schedule (:func:`~ddlight.methods.trajectory.unroll.minibatch_schedule`)
draws the same batches from the same seed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.parity import fixtures, official
from ddlight.methods.trajectory.buffer import parameter_layout
from ddlight.models.convnet import ConvNet

REPO = "GeorgeCazenavette/mtt-distillation"
RTOL = 1e-5  # relative to the largest magnitude of each quantity, fp32
ATOL = 1e-5

# The narrow setting every trajectory fixture shares: a few images, a 2-block width-8 ConvNet.
NET = {"channel": 1, "num_classes": 3, "width": 8, "depth": 2, "im_size": 28}
EPOCHS = 6  # expert epochs stored (E + 1 rows)
EXPERTS = 2
PERM_SEED = 1234
OUTER_START = "student_net = get_network(args.model"  # first line of the outer step in all three repos
NOTE = (
    "narrow ConvNet (width 8, depth 2, 28x28 padded to 32 as MNIST, 3 classes), ipc 2, 5 student steps in "
    "batches of 4, no augmentation, 5 outer steps; tolerances relative to each quantity's largest magnitude"
)


def their_slice(
    path: Path, start: str, end: str, patches=official.CPU_PATCHES, more: int = 0
) -> tuple[str, str]:
    """The source of ``path`` from the first line that contains ``start`` to the first line after it that
    contains ``end`` (inclusive) and ``more`` lines beyond, dedented and CPU-patched in memory, with a
    ``file:first-last`` label."""
    lines = path.read_text().splitlines()
    a = next(i for i, ln in enumerate(lines) if start in ln)
    b = next(i for i in range(a, len(lines)) if end in lines[i]) + more
    code = textwrap.dedent("\n".join(lines[a : b + 1]))
    for old, new in patches:
        code = code.replace(old, new)
    return code, f"{path.name}:{a + 1}-{b + 1}"


def run_slice(code: str, label: str, ns: dict[str, Any]) -> dict[str, Any]:
    exec(compile(code, label, "exec"), ns)
    return ns


class Recorder:
    """Stands in for ``np`` and ``torch`` in the authors' sliced loop: every attribute is the real
    module's, except the draws, which are recorded (``np.random.randint``) or taken from a dedicated
    seeded generator and recorded (``torch.randperm``)."""

    def __init__(self, module: Any, **overrides: Any) -> None:
        self._module, self._overrides = module, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides[name] if name in self._overrides else getattr(self._module, name)


def recorders(perm_seed: int, rng: np.random.RandomState) -> tuple[Recorder, Recorder, dict[str, list]]:
    draws: dict[str, list] = {"randint": [], "randperm": []}
    gen = torch.Generator().manual_seed(perm_seed)

    def randint(*a: Any) -> int:
        v = int(rng.randint(*a))
        draws["randint"].append(v)
        return v

    def randperm(n: int, *a: Any, **k: Any) -> torch.Tensor:
        p = torch.randperm(n, generator=gen)
        draws["randperm"].append(p.clone())
        return p

    np_rec = Recorder(np, random=Recorder(np.random, randint=randint))
    return np_rec, Recorder(torch, randperm=randperm), draws


def ddlight_net() -> ConvNet:
    return ConvNet(**NET)


def their_net_factory(networks: Any, net: dict[str, int] = NET) -> Any:
    """``get_network(args.model, channel, num_classes, im_size, dist=False)`` of their ``utils.py``, for
    the ConvNet ``net`` describes (the narrow one by default; theirs is width 128, depth 3)."""

    def get_network(*_a: Any, **_k: Any) -> nn.Module:
        s = net["im_size"]
        return networks.ConvNet(
            net["channel"], net["num_classes"], net["width"], net["depth"], "relu", "instancenorm",
            "avgpooling", (s, s),
        )  # fmt: skip

    return get_network


def class_data(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-major images a narrow ConvNet can learn in a few epochs: a class template (the same for
    every call) plus noise drawn from ``seed``."""
    k, s = NET["num_classes"], NET["im_size"]
    templates = torch.randn(k, 1, s, s, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    x = templates.repeat_interleave(per_class, 0) + 0.8 * torch.randn(k * per_class, 1, s, s, generator=g)
    return x, torch.arange(k).repeat_interleave(per_class)


def expert_trajectories(seed: int = 0) -> torch.Tensor:
    """(EXPERTS, EPOCHS + 1, P) flat trajectories: row 0 the initial weights, row e after e epochs of SGD
    (lr 0.05, batches of 10) on :func:`class_data` - the layout ddlight's buffer and their
    ``buffer.py`` both store. Real trajectories, so the label expert classifies most images correctly."""
    from torch.func import functional_call

    x, y = class_data(30, seed + 100)
    net = ddlight_net()
    names, shapes, sizes = parameter_layout(net)
    out = []
    for e in range(EXPERTS):
        torch.manual_seed(seed + e)
        flat = torch.cat([p.detach().flatten() for p in ddlight_net().parameters()])
        rows = [flat.clone()]
        g = torch.Generator().manual_seed(seed + 10 + e)
        for _ in range(EPOCHS):
            for idx in torch.randperm(len(y), generator=g).split(10):
                flat = flat.detach().requires_grad_(True)
                params = {n: c.view(sh) for n, c, sh in zip(names, flat.split(sizes), shapes, strict=True)}
                loss = nn.functional.cross_entropy(functional_call(net, params, (x[idx],)), y[idx])
                (grad,) = torch.autograd.grad(loss, flat)
                flat = flat - 0.05 * grad
            rows.append(flat.detach().clone())
        out.append(torch.stack(rows))
    return torch.stack(out)


def their_buffer(trajs: torch.Tensor, net: dict[str, int] = NET) -> list[list[list[torch.Tensor]]]:
    """Flat trajectories in their replay-buffer layout: per expert, per epoch, the parameter tensors in
    ``net.parameters()`` order (``buffer.py``: ``timestamps.append([p.detach().cpu() for p in ...])``)."""
    _, shapes, sizes = parameter_layout(ConvNet(**net))
    return [
        [[c.view(sh).clone() for c, sh in zip(row.split(sizes), shapes, strict=True)] for row in traj]
        for traj in trajs
    ]


def outer_steps(
    code: str,
    label: str,
    ns: dict[str, Any],
    draws: dict[str, list],
    iterations: int,
    state: dict[str, str],
) -> list[dict[str, Any]]:
    """Run their sliced outer step ``iterations`` times in ``ns``; per iteration: the draws it made, its
    loss, the gradients its backward left (``zero_grad`` precedes ``backward``, so ``.grad`` is this
    iteration's) and the state after its update. ``state`` maps output names to namespace names."""
    out = []
    for it in range(iterations):
        ns["it"] = it
        n_int, n_perm = len(draws["randint"]), len(draws["randperm"])
        run_slice(code, label, ns)
        rec: dict[str, Any] = {
            "randint": draws["randint"][n_int:],
            "perms": draws["randperm"][n_perm:],
            "loss": ns["grand_loss"].detach().clone(),
        }
        if "Upper_Bound" in ns:  # DATM/PAD's growing window
            rec["bound"] = torch.tensor(int(ns["Upper_Bound"]))
        for name, var in state.items():
            t = ns[var]
            rec[f"grad_{name}"] = t.grad.detach().clone()
            rec[name] = t.detach().clone()
        out.append(rec)
    return out


def rows_of(records: list[dict[str, Any]], ours: list[dict[str, Any]], keys: list[str]) -> list[tuple]:
    """(label, ours, theirs) for every iteration and key, for :func:`fixtures.print_rows`."""
    pairs = enumerate(zip(ours, records, strict=True))
    return [(f"it{i + 1} {k}", o[k], t[k]) for i, (o, t) in pairs for k in keys]


def ddlight_outer_steps(name: str, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """ddlight's outer steps from the fixture's inputs (what ``tests/parity`` re-runs)."""
    from tests.helpers.trajectory import parity_method, parity_outer_steps

    return parity_outer_steps(parity_method(name, inputs), inputs["perm_seed"], inputs["draws"])


def mtt_draws(rec: dict[str, Any]) -> dict[str, Any]:
    """MTT's iteration draws in the order ``distill.py`` makes them: the expert (line 306), the start
    epoch (line 324), then the permutations (line 345)."""
    return {"expert": rec["randint"][0], "start_epoch": rec["randint"][1], "perms": rec["perms"]}


def their_namespace(
    root: Path,
    settings: dict[str, Any],
    trajs: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    net: dict[str, int] = NET,
    np_mod: Any = np,
    torch_mod: Any = torch,
    dsa_strategy: str | None = None,
) -> dict[str, Any]:
    """What ``main()`` of ``distill.py`` holds when its outer step starts (lines 121-139 at 50dccea): their
    ``ReparamModule`` and ``get_network``, the replay buffer of ``trajs`` loaded whole (``args.load_all``),
    learnable copies of ``images`` and ``syn_lr`` (``image_syn``, ``syn_lr``) with their two SGD optimizers
    (momentum 0.5, lines 138-139), hard labels and their criterion. ``np_mod``/``torch_mod`` may be
    :func:`recorders`; ``dsa_strategy`` switches their ``DiffAugment`` on (sliced from ``utils.py``, whose
    module imports need kornia and a plotting stack), off by default as in the parity fixtures."""
    reparam, networks = official.load(root, "reparam_module"), official.load(root, "networks")
    image_syn = images.clone().requires_grad_(True)
    syn_lr = syn_lr.clone().requires_grad_(True)
    ns: dict[str, Any] = {}
    if dsa_strategy is not None:
        code, label = their_slice(root / "utils.py", "class ParamDiffAug", "'rotate': [rand_rotate]", more=1)
        aug = run_slice(code, label, {"np": np, "torch": torch, "F": nn.functional})
        ns["DiffAugment"] = aug["DiffAugment"]
    args = SimpleNamespace(
        model="ConvNet", device="cpu", distributed=False, load_all=True,
        max_start_epoch=settings["max_start_epoch"], expert_epochs=settings["expert_epochs"],
        syn_steps=settings["syn_steps"], batch_syn=settings["batch_syn"], texture=False,
        dsa=dsa_strategy is not None, no_aug=dsa_strategy is None, dsa_strategy=dsa_strategy,
        dsa_param=aug["ParamDiffAug"]() if dsa_strategy is not None else None,
    )  # fmt: skip
    ns.update({
        "args": args, "np": np_mod, "torch": torch_mod, "get_network": their_net_factory(networks, net),
        "ReparamModule": reparam.ReparamModule, "channel": net["channel"], "num_classes": net["num_classes"],
        "im_size": (net["im_size"],) * 2, "buffer": their_buffer(trajs, net), "image_syn": image_syn,
        "label_syn": labels.clone(), "syn_lr": syn_lr, "criterion": nn.CrossEntropyLoss(),
        "optimizer_img": torch.optim.SGD([image_syn], lr=settings["lr_img"], momentum=0.5),
        "optimizer_lr": torch.optim.SGD([syn_lr], lr=settings["lr_lr"], momentum=0.5),
    })  # fmt: skip
    return ns


SETTINGS = {
    "ipc": 2,
    "syn_steps": 5,
    "expert_epochs": 2,
    "max_start_epoch": 4,
    "batch_syn": 4,
    "lr_img": 1000.0,
    "lr_lr": 1e-5,
    "lr_teacher_init": 0.01,
    "iterations": 5,
}


def run(official_root: Path, commit: str, out: Path | None) -> bool:
    root = Path(official_root)
    s = SETTINGS
    trajs = expert_trajectories()
    images, labels = class_data(s["ipc"], seed=7)
    syn_lr0 = torch.tensor(s["lr_teacher_init"])

    code, label = their_slice(root / "distill.py", OUTER_START, "optimizer_lr.step(")
    np_rec, torch_rec, draws = recorders(PERM_SEED, np.random.RandomState(0))
    ns = their_namespace(root, s, trajs, images, labels, syn_lr0, np_mod=np_rec, torch_mod=torch_rec)
    learned = {"images": "image_syn", "syn_lr": "syn_lr"}
    records = outer_steps(code, label, ns, draws, s["iterations"], learned)

    inputs = {
        "net": NET, "settings": s, "trajectories": trajs, "images": images, "labels": labels,
        "syn_lr": syn_lr0, "perm_seed": PERM_SEED, "draws": [mtt_draws(r) for r in records],
    }  # fmt: skip
    outputs = {"iterations": [{k: v for k, v in r.items() if k not in ("randint", "perms")} for r in records]}
    ours = ddlight_outer_steps("mtt", inputs)
    keys = ["loss", "grad_images", "grad_syn_lr", "images", "syn_lr"]
    inputs["buffer"], outputs["buffer"], buffer_rows = buffer_run(root)
    ok = fixtures.print_rows("mtt", rows_of(outputs["iterations"], ours, keys) + buffer_rows, RTOL)
    if out is not None:
        m = fixtures.manifest(
            REPO, commit, "distill.py, buffer.py, utils.py",
            f"main() outer step, sliced ({label}); {outputs['buffer']['where']}", RTOL, ATOL,
            NOTE,
        )  # fmt: skip
        print("wrote", fixtures.write("mtt", m, inputs, outputs, out))
    return ok


# ------------------------------------------------------------------------------------ the expert buffer
BUFFER_EPOCHS = 3


def buffer_run(root: Path) -> tuple[dict[str, Any], dict[str, Any], list[tuple]]:
    """MTT's ``buffer.py`` expert loop (lines 69-99 at 50dccea, ``teacher_net = get_network`` to
    ``trajectories.append(timestamps)``) with its ``utils.epoch`` (lines 300-347, sliced: ``utils.py``
    imports kornia at module level), on the batches and initial weights of ddlight's own expert run:
    ``get_network`` returns ddlight's tiny ConvNet at ddlight's seeded initialisation, the train loader
    yields ddlight's batches epoch by epoch, augmentation is off on both sides (``augment`` returns its
    input; ``dsa_strategy: none``), SGD at buffer.py's defaults (lr 0.01, ``mom`` 0, ``l2`` 0, no decay).
    What is compared: the stored trajectory, entry by entry (entry 0 the initial weights, entry e after e
    epochs, parameters in ``net.parameters()`` order)."""
    import tempfile

    from ddlight.methods.trajectory.buffer import unflatten_parameters
    from tests.helpers.builders import TinyDigits, tiny_net
    from tests.helpers.trajectory import parity_experts

    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ours = parity_experts(Path(tmp), BUFFER_EPOCHS, batches)
    per_epoch = len(batches) // BUFFER_EPOCHS
    epochs = iter([batches[e * per_epoch : (e + 1) * per_epoch] for e in range(BUFFER_EPOCHS)])

    class EpochLoader:
        def __iter__(self):  # noqa: ANN204
            return iter(next(epochs))

    def get_network(*_a: Any, **_k: Any) -> nn.Module:
        net = tiny_net()
        names, shapes, sizes = parameter_layout(net)
        with torch.no_grad():
            for name, value in unflatten_parameters(ours[0], names, shapes, sizes).items():
                net.get_parameter(name).copy_(value)
        return net

    dm = TinyDigits()
    dm.setup("fit")
    test_x, test_y = next(iter(dm.test_dataloader()))
    first, last = "def epoch(mode, dataloader", "return loss_avg, acc_avg"
    code, where_epoch = their_slice(root / "utils.py", first, last)
    ns: dict[str, Any] = {"np": np, "torch": torch, "augment": lambda images, param, device: images}
    run_slice(code, where_epoch, ns)
    args = SimpleNamespace(
        model="ConvNet", device="cpu", dataset="TinyDigits", lr_teacher=0.01, mom=0.0, l2=0.0,
        train_epochs=BUFFER_EPOCHS, decay=False, dsa=False, dc_aug_param=None,
    )  # fmt: skip
    ns.update({
        "args": args, "get_network": get_network, "channel": 1, "num_classes": 4, "im_size": (12, 12),
        "trainloader": EpochLoader(), "testloader": [(test_x, test_y)], "criterion": nn.CrossEntropyLoss(),
        "trajectories": [], "it": 0,
    })  # fmt: skip
    # On a GPU ``p.detach().cpu()`` copies; on the CPU it is the live parameter, and every stored entry would
    # alias the final weights: the device patch makes it the copy it is on their hardware.
    patches = (*official.CPU_PATCHES, ("p.detach().cpu()", "p.detach().cpu().clone()"))
    first, last = "teacher_net = get_network(args.model", "trajectories.append("
    code, where_loop = their_slice(root / "buffer.py", first, last, patches)
    run_slice(code, where_loop, ns)
    (timestamps,) = ns["trajectories"]
    theirs = torch.stack([torch.cat([p.flatten() for p in row]) for row in timestamps])
    inputs = {"buffer_epochs": BUFFER_EPOCHS, "batches": batches}
    outputs = {"trajectory": theirs, "entries": len(timestamps), "where": f"{where_loop}, {where_epoch}"}
    rows = [(f"buffer entry {e}", ours[e], theirs[e]) for e in range(len(theirs))]
    return inputs, outputs, rows
