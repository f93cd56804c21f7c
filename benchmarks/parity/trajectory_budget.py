"""Equal-budget accuracy for the trajectory family: MTT, DATM and PAD, the authors' code and ddlight, from
one expert buffer and one start, for the same number of iterations on MNIST IPC 10; ddlight's evaluator
scores both sets.

* ``buffer``: the experts, trained by MTT's own expert loop (``buffer.py``, ``for it in range(0,
  args.num_experts)`` to ``trajectories.append``, with their ``utils.epoch``, ``get_network`` and
  ``DiffAugment``), executed as a sliced copy in a namespace. No authors' buffer script reads MNIST (MTT's,
  DATM's and PAD's ``get_dataset`` have no MNIST branch), so the harness supplies the data: MNIST as DC's
  ``get_dataset`` builds it (``ToTensor`` then ``Normalize(0.1307, 0.3081)``, the same values as ddlight's
  MNIST) in their ``TensorDataset``/``DataLoader`` (256, shuffled). Their file is kept
  (``replay_buffer_0.pt``) and converted to a ddlight buffer (``experts/``: one ``(E + 1, P)`` row per
  epoch, the parameters flattened in ``named_parameters`` order, which is their ``parameters()`` order).
  Their ``utils`` modules import ``kornia`` at module level: install it beside ddlight for the buffer and
  official stages.
* ``start``: ddlight's initial set (a ``max_steps: 0`` run): random real images for MTT; for DATM and PAD
  the images the first expert classifies correctly and the experts' mean logits (the rule shown
  fixture-equal to theirs, ``tests/parity/test_datm.py``). Both sides start from it.
* ``official``: the authors' outer step (``distill.py`` / ``distill/DATM.py`` / ``distill/PAD.py``, from
  ``student_net = get_network`` to ``optimizer_lr.step()``) run ``--iterations`` times on that start and
  their buffer, with DSA as released (their ``DiffAugment`` and ``ParamDiffAug``, the strategy
  ``color_crop_cutout_flip_scale_rotate``, digits flipped), ``load_all`` (the expert drawn with
  replacement, as ddlight), the settings of ddlight's run (read from its ``hparams.yaml``).
* ``ddlight``: ``configs/mnist/{mtt,datm,pad}.yaml`` with ``configs/overlays/dsa_keep_flip.yaml``, the
  converted buffer, ``init_from`` the start and ``max_steps`` = ``--iterations``. PAD runs the released
  ``loss_ratio`` FIEM (0.5, CIFAR-10 IPC 10's) instead of the MNIST config's ``depth_ratio``.
* ``evaluate --side {official,ddlight,start,real}``: ``configs/mnist/evaluate.yaml``'s evaluator (5 x
  ConvNet-3 x 300 epochs) on the set, DATM/PAD at their learned labels and learned ``syn_lr``. ``start`` is
  the start as the method begins it (DATM/PAD: soft expert logits, the initial ``syn_lr``); ``real`` is the
  same images as plain real images: their class labels and the protocol's rate.

A second launch is a second ``--work`` folder holding the same ``experts/`` and ``replay_buffer_0.pt`` (the
authors' side reads their file) and its own ``--seed`` (the start's draw, ddlight's run, the authors' RNG).

    python -m benchmarks.parity.trajectory_budget buffer --official MTT_CHECKOUT --work W
    python -m benchmarks.parity.trajectory_budget start datm --work W
    python -m benchmarks.parity.trajectory_budget official datm --official DATM_CHECKOUT --work W
    python -m benchmarks.parity.trajectory_budget ddlight datm --work W
    python -m benchmarks.parity.trajectory_budget evaluate datm --side official --work W   (and ddlight)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.parity import official
from benchmarks.parity.budget import DATA, ROOT, score
from benchmarks.parity.datm import REPARAM_PATCHES
from benchmarks.parity.mtt import OUTER_START, run_slice, their_slice
from ddlight.data.synthetic import SyntheticSet

STRATEGY = "color_crop_cutout_flip_scale_rotate"  # their default, as released (flips digits)
CONFIG = {m: f"configs/mnist/{m}.yaml" for m in ("mtt", "datm", "pad")}
FILE = {"mtt": "distill.py", "datm": "distill/DATM.py", "pad": "distill/PAD.py"}
# What the released PAD runs instead of the MNIST config's depth mask (CIFAR-10 IPC 10's loss_ratio).
OVERRIDES = {"pad": ["--model.init_args.depth_ratio", "0", "--model.init_args.loss_ratio", "0.5"]}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def mnist(data: Path) -> Any:
    from ddlight.data import MNISTDataModule

    dm = MNISTDataModule(data_dir=str(data))
    dm.setup("fit")
    return dm


# ------------------------------------------------------------------------------------------ buffer
def buffer_stage(root: Path, work: Path, experts: int, epochs: int, data: Path, seed: int) -> None:
    """Their expert loop on MNIST, then the same trajectories as a ddlight buffer."""
    utils = official.load(root, "utils")
    dm = mnist(data)
    x = dm.normalize(dm.train_images)
    test = dm.normalize(dm.test_images)
    torch.manual_seed(seed)
    np.random.seed(seed)
    args = SimpleNamespace(
        model="ConvNet", device="cpu", dataset="MNIST", num_experts=experts, lr_teacher=0.01, mom=0.0,
        l2=0.0, train_epochs=epochs, decay=False, dsa=True, dsa_strategy=STRATEGY,
        dsa_param=utils.ParamDiffAug(), batch_train=256,
    )  # fmt: skip
    args.dc_aug_param = utils.get_daparam("MNIST", "ConvNet", "ConvNet", None)
    tds = utils.TensorDataset(x, dm.train_labels)
    ns: dict[str, Any] = {
        "args": args, "np": np, "torch": torch, "get_network": utils.get_network, "epoch": utils.epoch,
        "channel": 1, "num_classes": 10, "im_size": (28, 28), "criterion": nn.CrossEntropyLoss(),
        "trainloader": torch.utils.data.DataLoader(tds, batch_size=256, shuffle=True, num_workers=0),
        "testloader": torch.utils.data.DataLoader(
            utils.TensorDataset(test, dm.test_labels), batch_size=256, shuffle=False, num_workers=0
        ),
        "trajectories": [],
    }  # fmt: skip
    # On a GPU ``p.detach().cpu()`` copies; on the CPU it is the live parameter (every entry would alias
    # the final weights): the device patch makes it the copy it is on their hardware.
    patches = (*official.CPU_PATCHES, ("p.detach().cpu()", "p.detach().cpu().clone()"))
    code, where = their_slice(
        root / "buffer.py", "for it in range(0, args.num_experts):", "trajectories.append(", patches
    )
    t0 = time.time()
    run_slice(code, where, ns)
    seconds = time.time() - t0
    work.mkdir(parents=True, exist_ok=True)
    torch.save(ns["trajectories"], work / "replay_buffer_0.pt")
    to_ddlight(ns["trajectories"], work / "experts", dm, where, seconds / experts)
    print(f"buffer: {experts} experts x {epochs} epochs in {seconds:.0f} s ({where})")


def to_ddlight(trajectories: list, root: Path, dm: Any, where: str, seconds: float) -> None:
    """Their ``[expert][epoch][tensor]`` lists as ddlight's manifest plus ``(E + 1, P)`` rows."""
    from ddlight.data.base import dataset_name
    from ddlight.methods.trajectory.buffer import FORMAT_VERSION, open_manifest, record_expert
    from ddlight.models import ConvNet

    net = ConvNet()
    names, shapes = zip(*[(n, list(p.shape)) for n, p in net.named_parameters()], strict=True)
    for rows in trajectories:
        if [list(p.shape) for p in rows[0]] != list(shapes):
            raise ValueError("their parameters are not ddlight ConvNet's, in order")
    identity = {
        "format_version": FORMAT_VERSION, "epochs": len(trajectories[0]) - 1, "param_names": list(names),
        "param_shapes": list(shapes), "num_params": int(sum(p.numel() for p in net.parameters())),
        "net": {"class_path": "ddlight.models.ConvNet"},
        "dataset": {"name": dataset_name(dm), "num_train": len(dm.train_labels), "num_classes": 10},
        "recipe": {"source": f"mtt-distillation {where}", "lr": 0.01, "dsa_strategy": STRATEGY},
    }  # fmt: skip
    manifest = open_manifest(root, identity, len(trajectories), el2n=False)
    for i, rows in enumerate(trajectories):
        flat = torch.stack([torch.cat([p.flatten() for p in row]) for row in rows])
        record_expert(root, manifest, i, flat, float("nan"), seconds)


# ------------------------------------------------------------------------------- start and ddlight
def ddlight_run(
    method: str, work: Path, iterations: int, data: Path, start: bool = False, seed: int = 0
) -> Path:
    """ddlight's run (``start``: ``max_steps 0``, the initial set alone) in ``W/<method>_{start,ddlight}``."""
    wd = work / f"{method}_{'start' if start else 'ddlight'}"
    cmd = [sys.executable, "-m", "ddlight", "fit", "--config", str(ROOT / CONFIG[method])]
    cmd += ["--config", str(ROOT / "configs/overlays/dsa_keep_flip.yaml"), *OVERRIDES.get(method, [])]
    cmd += ["--trainer.max_steps", str(0 if start else iterations), "--trainer.logger.init_args.save_dir"]
    cmd += [str(wd / "logs"), "--model.init_args.export_dir", str(wd), "--data.init_args.data_dir", str(data)]
    cmd += ["--model.init_args.buffer_dir", str(work / "experts"), "--model.init_args.grid_every", "0"]
    cmd += ["--model.init_args.seed", str(seed), "--seed_everything", str(seed)]  # method, torch
    if not start:
        cmd += ["--model.init_args.init_from", str(work / f"{method}_start" / "synthetic.pt")]
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(wd / "run.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    syn = SyntheticSet.load(wd / "synthetic.pt")
    if not start:
        seconds = float(syn.extra["distill_seconds"])
        # the largest child waited for: this run (one child per process of this harness)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        info = {"iterations": iterations, "s_per_it": seconds / iterations, "wall_s": time.time() - t0}
        info["peak_rss_gb"] = rss
        (wd / "timing.json").write_text(json.dumps({**info, "cmd": cmd}))
        print(f"{method} ddlight: {json.dumps(info)}")
    return wd / "synthetic.pt"


# ------------------------------------------------------------------------------------------ official
def their_args(method: str, hp: dict[str, Any], utils: Any) -> SimpleNamespace:
    """Their ``args`` with ddlight's run's values (``hp``: the start set's recorded model arguments)."""
    args = SimpleNamespace(
        model="ConvNet", device="cpu", dataset="MNIST", distributed=False, load_all=True, texture=False,
        max_start_epoch=hp["max_start_epoch"], expert_epochs=hp["expert_epochs"], syn_steps=hp["syn_steps"],
        batch_syn=hp["batch_syn"] or 10 * hp["ipc"], dsa=True, no_aug=False, dsa_strategy=STRATEGY,
        dsa_param=utils.ParamDiffAug(), max_files=None, max_experts=None,
    )  # fmt: skip
    if method != "mtt":
        threshold = hp["loss_threshold"]
        args.__dict__.update(
            Sequential_Generation=True, min_start_epoch=hp["min_start_epoch"],
            current_max_start_epoch=hp["current_max_start_epoch"],
            expansion_end_epoch=hp["max_start_epoch_growth_steps"],
            threshold=float("inf") if threshold is None else threshold,
            loss_ratio=hp.get("loss_ratio", 0.0), loss_threshold_low=0.0, loss_threshold_high=1.0,
        )  # fmt: skip
    return args


def official_stage(method: str, root: Path, work: Path, iterations: int, seed: int) -> None:
    """Their outer step ``iterations`` times from the shared start; the set is written as ddlight's
    ``synthetic.pt`` (the start's file with images, labels and ``syn_lr`` replaced)."""
    start = SyntheticSet.load(work / f"{method}_start" / "synthetic.pt")
    hp = start.config["model"]
    mod, reparam_patches = (
        ("utils", official.CPU_PATCHES) if method == "mtt" else ("utils.utils_baseline", REPARAM_PATCHES)
    )
    utils = official.load(root, mod)
    reparam = official.load(root, "reparam_module", reparam_patches)
    torch.manual_seed(seed)
    np.random.seed(seed)
    image_syn = start.images.detach().clone().float().requires_grad_(True)
    soft = method != "mtt"
    labels = start.labels.detach().clone()
    label_syn = labels.float().requires_grad_(True) if soft else labels
    syn_lr = torch.tensor(float(hp["lr_teacher_init"])).requires_grad_(True)
    ns: dict[str, Any] = {
        "args": their_args(method, hp, utils), "np": np, "torch": torch, "F": nn.functional,
        "get_network": utils.get_network, "ReparamModule": reparam.ReparamModule,
        "DiffAugment": utils.DiffAugment, "channel": 1, "num_classes": 10, "im_size": (28, 28),
        "buffer": torch.load(work / "replay_buffer_0.pt"), "image_syn": image_syn, "label_syn": label_syn,
        "syn_lr": syn_lr, "criterion": nn.CrossEntropyLoss(),
        # distill.py:138-139 / DATM.py:245-246, 329 (momentum 0.5; labels at lr_y, Momentum_y)
        "optimizer_img": torch.optim.SGD([image_syn], lr=hp["lr_img"], momentum=0.5),
        "optimizer_lr": torch.optim.SGD([syn_lr], lr=hp["lr_lr"], momentum=0.5),
    }  # fmt: skip
    path = root / FILE[method]
    if soft:
        code, where = their_slice(path, "def SoftCrossEntropy", "return loss")
        run_slice(code, where, ns)
        ns["criterion"] = ns["SoftCrossEntropy"]
        ns["optimizer_y"] = torch.optim.SGD([label_syn], lr=hp["lr_label"], momentum=hp["momentum_label"])
    code, where = their_slice(path, OUTER_START, "optimizer_lr.step(")
    losses, times = [], []
    for it in range(iterations):
        ns["it"] = it
        t0 = time.perf_counter()
        run_slice(code, where, ns)
        times.append(time.perf_counter() - t0)
        losses.append(float(ns["grand_loss"].detach()))
    out = work / f"{method}_official"
    out.mkdir(parents=True, exist_ok=True)
    start.images = image_syn.detach().clone()
    start.labels = label_syn.detach().clone()
    start.method = f"{method}_official"
    lr = float(syn_lr.detach())
    start.extra = {**start.extra, "syn_lr": lr, "losses": losses}
    start.save(out / "synthetic.pt")
    info = {"iterations": iterations, "s_per_it": sum(times) / iterations, "peak_rss_gb": peak_rss_gb(),
            "where": where, "syn_lr": lr}  # fmt: skip
    (out / "timing.json").write_text(json.dumps(info))
    print(f"{method} official: {json.dumps(info)}")


# ----------------------------------------------------------------------------------------- evaluate
def evaluate(method: str, work: Path, side: str, data: Path, epochs: int | None = None) -> None:
    """:func:`.budget.score` on one set; DATM/PAD at the set's learned ``syn_lr``."""
    path = work / f"{method}_{'start' if side == 'real' else side}" / "synthetic.pt"
    syn = SyntheticSet.load(path)
    lr = None if method == "mtt" or side == "real" else float(syn.extra["syn_lr"])
    if side == "real":  # the start's images with their classes (ddlight's sets are class-major)
        classes = torch.arange(syn.num_classes).repeat_interleave(syn.ipc)
        agree = float((syn.hard_labels == classes).float().mean())
        print(f"{method} real: the start's labels' argmax agrees with the images' classes for {agree:.0%}")
        syn.labels = classes
        path = syn.save(path.parent / "real.pt")
    suffix = ("_real" if side == "real" else "") + ("" if epochs is None else f"_{epochs}ep")
    out = path.parent / f"eval{suffix}.json"
    res = score(path, out, epochs, data, lr=lr)
    print(f"{method} {side}: {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % ({res['accuracies']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.parity.trajectory_budget", description=__doc__)
    ap.add_argument("stage", choices=("buffer", "start", "official", "ddlight", "evaluate"))
    ap.add_argument("method", nargs="?", choices=sorted(FILE))
    ap.add_argument("--official", type=Path, help="the authors' checkout (buffer: MTT's)")
    ap.add_argument("--work", type=Path, required=True, help="a folder outside the repository")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--experts", type=int, default=3)
    ap.add_argument("--expert-epochs", type=int, default=4, help="stage buffer: epochs per expert")
    ap.add_argument("--epochs", type=int, help="stage evaluate: epochs instead of evaluate.yaml's 300")
    ap.add_argument("--side", choices=("official", "ddlight", "start", "real"))
    ap.add_argument("--data", type=Path, default=DATA, help="root holding MNIST/raw")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.stage == "buffer":
        buffer_stage(a.official, a.work, a.experts, a.expert_epochs, a.data, a.seed)
    elif a.stage in ("start", "ddlight"):
        ddlight_run(a.method, a.work, a.iterations, a.data, start=a.stage == "start", seed=a.seed)
    elif a.stage == "official":
        official_stage(a.method, a.official, a.work, a.iterations, a.seed)
    else:
        evaluate(a.method, a.work, a.side, a.data, a.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
