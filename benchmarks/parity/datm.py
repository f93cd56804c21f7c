"""DATM (NUS-HPC-AI-Lab/DATM ``distill/DATM.py``) against ddlight's :class:`~ddlight.methods.trajectory.DATM`.

Three sliced copies of ``main()``'s source run in a namespace built as in :mod:`.mtt` (their
``ReparamModule`` and ``networks.ConvNet`` from the checkout, an in-memory replay buffer in their layout,
``torch.load`` answered from it; the hard-coded ``torch.device("cuda:0")`` becomes the CPU in the patched
copy):

* the soft-label initialisation, ``pix_init: samples_predicted_correctly``: the selection of correctly
  classified real images (lines 186-239 at 97ae510: the first expert of the first file, at
  ``Label_Model_Timestamp``, scans each class's candidates in order and keeps the first ``ipc`` it
  classifies correctly) and the label logits (lines 270-306: the mean, over every expert of every file,
  of the logits of the experts that classify the image correctly). ``get_images`` hands both sides the
  same candidates in the same order (theirs draws ``np.random.permutation`` of the whole class; ddlight
  draws a pool of ``init_pool`` per class: a named deviation, which images are candidates, not which are
  kept);
* the growing window (``Sequential_Generation``, lines 485-489) over a table of iterations;
* five outer steps (lines 452-559: ``student_net = get_network`` to the threshold's ``optimizer_lr.step()``)
  from the initialised images and labels with the window growing inside them and a loss threshold that
  skips some of them, with their ``SoftCrossEntropy`` (lines 255-260) and their three SGD optimizers
  (images and ``syn_lr`` at momentum 0.5, labels at ``lr_y``/``Momentum_y``, lines 245-246, 329).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.parity import fixtures, official
from benchmarks.parity.mtt import (
    NET,
    OUTER_START,
    PERM_SEED,
    class_data,
    ddlight_outer_steps,
    expert_trajectories,
    outer_steps,
    recorders,
    rows_of,
    run_slice,
    their_buffer,
    their_net_factory,
    their_slice,
)
from benchmarks.parity.mtt import (
    SETTINGS as MTT_SETTINGS,
)

REPO = "NUS-HPC-AI-Lab/DATM"
RTOL = 1e-5
ATOL = 1e-5
FILE = "distill/DATM.py"
POOL = 8  # candidates per class both sides see
LABEL_EPOCH = 1  # Label_Model_Timestamp: an early expert, so that some candidates are misclassified

SETTINGS = {
    **MTT_SETTINGS,
    "min_start_epoch": 0,
    "current_max_start_epoch": 2,
    "max_start_epoch_growth_steps": 3,  # expansion_end_epoch
    "lr_label": 2.0,
    "momentum_label": 0.9,
    "ddlight": (
        "min_start_epoch", "current_max_start_epoch", "max_start_epoch_growth_steps", "lr_label",
        "momentum_label", "loss_threshold", "label_expert_epoch",
    ),
}  # fmt: skip

# (current_max_start_epoch, max_start_epoch, expansion_end_epoch): DATM's CIFAR-10 IPC 10 and its cfg.py
# defaults, and the fixture's own small window.
# PAD's reparam_module.py imports a plotting helper's dependencies (utils.utils_baseline needs kornia,
# matplotlib) that ReparamModule itself does not use: they are dropped from the in-memory copy.
REPARAM_PATCHES = (
    *official.CPU_PATCHES,
    ("from utils.utils_baseline import get_network", "get_network = None  # parity: plotting helper only"),
    ("import matplotlib.pyplot as plt", ""),
    ("from matplotlib.colors import Normalize", ""),
    ("from matplotlib.cm import ScalarMappable", ""),
)
# First and last lines of the two label-initialisation blocks of main().
SELECT = ("if args.parall_eva==False:", "image_syn.data[c * args.ipc:(c + 1) * args.ipc] = temp_img")
LOGITS = ('if args.pix_init == "samples_predicted_correctly":', "Initialized_Labels = average_logits_per")
WINDOWS = [(10, 20, 1000), (20, 25, 3000), (2, 4, 3)]
WINDOW_ITS = [0, 1, 2, 3, 4, 7, 99, 100, 101, 499, 500, 999, 1000, 1001, 2999, 3000, 5000, 10000]


def their_args(s: dict[str, Any], threshold: float) -> SimpleNamespace:
    return SimpleNamespace(
        model="ConvNet", device="cpu", distributed=False, load_all=True, parall_eva=False,
        ipc=s["ipc"], Label_Model_Timestamp=s["label_expert_epoch"], Sequential_Generation=True,
        min_start_epoch=s["min_start_epoch"], current_max_start_epoch=s["current_max_start_epoch"],
        max_start_epoch=s["max_start_epoch"], expansion_end_epoch=s["max_start_epoch_growth_steps"],
        expert_epochs=s["expert_epochs"], syn_steps=s["syn_steps"], batch_syn=s["batch_syn"],
        dsa=False, no_aug=True, threshold=threshold, pix_init="samples_predicted_correctly",
    )  # fmt: skip


def base_namespace(root: Path, trajs: torch.Tensor, args: SimpleNamespace) -> dict[str, Any]:
    """What ``main()`` holds before the slices: their network and ``ReparamModule``, the replay buffer
    (one file, ``torch.load`` answered from memory), and ``np``/``torch`` stand-ins recording the draws."""
    reparam = official.load(root, "reparam_module", REPARAM_PATCHES)
    networks = official.load(root, "networks")
    files = {"replay_buffer_0.pt": their_buffer(trajs)}
    np_rec, torch_rec, draws = recorders(PERM_SEED, np.random.RandomState(0))
    torch_rec._overrides["load"] = lambda path, *a, **k: files[path]
    ns = {
        "args": args, "np": np_rec, "torch": torch_rec, "F": F, "get_network": their_net_factory(networks),
        "ReparamModule": reparam.ReparamModule, "channel": NET["channel"], "num_classes": NET["num_classes"],
        "im_size": (NET["im_size"],) * 2, "cfg": SimpleNamespace(Initialize_Label_With_Another_Model=False),
        "expert_files": list(files), "label_expert_files": list(files), "buffer": files["replay_buffer_0.pt"],
        "_draws": draws,
    }  # fmt: skip
    return ns


def label_init(
    path: Path, ns: dict[str, Any], cand: torch.Tensor, s: dict[str, Any], select: str = SELECT[0]
) -> dict[str, Any]:
    """Their selection and label logits on ``cand`` (class-major, POOL per class, in scan order);
    ``select`` is the first line of the selection block (PAD's copy spaces ``==``)."""
    k, ipc = NET["num_classes"], s["ipc"]
    ns["indices_class"] = [list(range(POOL)) for _ in range(k)]
    ns["get_images"] = lambda c, n: cand[c * POOL : c * POOL + n]
    ns["image_syn"] = torch.zeros(k * ipc, *cand.shape[1:])
    ns["label_syn"] = torch.arange(k).repeat_interleave(ipc)
    code, where_sel = their_slice(path, select, SELECT[1])
    run_slice(code, where_sel, ns)
    code, where_log = their_slice(path, LOGITS[0], LOGITS[1])
    run_slice(code, where_log, ns)
    # which candidate each kept image is (their code keeps the images, not their indices)
    rows = torch.cdist(ns["image_syn"].flatten(1), cand.flatten(1)).argmin(1)
    return {"rows": rows, "images": ns["image_syn"].clone(), "logits": ns["Initialized_Labels"].clone(),
            "where": f"{where_sel}, {where_log}"}  # fmt: skip


def window_table(path: Path) -> torch.Tensor:
    """(len(WINDOWS), len(WINDOW_ITS)) of their ``Upper_Bound``."""
    code, _ = their_slice(path, "if args.Sequential_Generation:", "Upper_Bound = args.max_start_epoch")
    out = torch.zeros(len(WINDOWS), len(WINDOW_ITS), dtype=torch.long)
    for i, (cur, top, end) in enumerate(WINDOWS):
        for j, it in enumerate(WINDOW_ITS):
            window = {"current_max_start_epoch": cur, "max_start_epoch": top, "expansion_end_epoch": end}
            args = SimpleNamespace(Sequential_Generation=True, **window)
            out[i, j] = run_slice(code, "window", {"args": args, "it": it})["Upper_Bound"]
    return out


def family_outer_steps(
    root: Path, file: str, ns: dict[str, Any], s: dict[str, Any], images: torch.Tensor, logits: torch.Tensor
) -> tuple[list[dict[str, Any]], str]:
    """Their outer steps (DATM's or PAD's file) from ``images``/``logits`` at ``syn_lr`` = lr_teacher."""
    path = root / file
    code, where = their_slice(path, "def SoftCrossEntropy", "return loss")
    run_slice(code, where, ns)
    ns["criterion"] = ns["SoftCrossEntropy"]
    ns["image_syn"] = images.clone().requires_grad_(True)
    ns["label_syn"] = logits.clone().requires_grad_(True)
    ns["syn_lr"] = torch.tensor(s["lr_teacher_init"]).requires_grad_(True)
    ns["optimizer_img"] = torch.optim.SGD([ns["image_syn"]], lr=s["lr_img"], momentum=0.5)
    ns["optimizer_lr"] = torch.optim.SGD([ns["syn_lr"]], lr=s["lr_lr"], momentum=0.5)
    ns["optimizer_y"] = torch.optim.SGD([ns["label_syn"]], lr=s["lr_label"], momentum=s["momentum_label"])
    code, where = their_slice(path, OUTER_START, "optimizer_lr.step(")
    learned = {"images": "image_syn", "syn_lr": "syn_lr", "labels": "label_syn"}
    recs = outer_steps(code, where, ns, ns["_draws"], s["iterations"], learned)
    for r in recs:  # their rule, line 556: update only when grand_loss <= threshold
        r["skipped"] = torch.tensor(bool(r["loss"] > ns["args"].threshold))
    return recs, where


def draws_of(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The expert (``np.random.randint``, line 466), the start epoch (line 491), the permutations."""
    return [{"expert": r["randint"][0], "start_epoch": r["randint"][1], "perms": r["perms"]} for r in recs]


def family_run(
    name: str, root: Path, file: str, s: dict[str, Any], extra: dict[str, Any], select: str = SELECT[0]
) -> tuple:
    """DATM's or PAD's comparison: label init, then five outer steps, first without a threshold (to
    place one between the losses), then with it; ``extra`` are further ``args`` of theirs. Returns
    (inputs, outputs, rows, where)."""
    trajs = expert_trajectories()
    cand, _ = class_data(POOL, seed=11)
    cand = cand + 3.0 * torch.randn(cand.shape, generator=torch.Generator().manual_seed(12))
    ns = base_namespace(root, trajs, their_args(s, float("inf")))
    for key, value in extra.items():
        setattr(ns["args"], key, value)
    init = label_init(root / file, ns, cand, s, select)
    probe, _ = family_outer_steps(root, file, dict(ns), s, init["images"], init["logits"])
    losses = sorted(float(r["loss"]) for r in probe)
    # between the losses, above the first one (an iteration that skips at once tests little)
    threshold = max(losses[len(losses) // 2], float(probe[0]["loss"])) * (1 + 1e-4)
    s = {**s, "loss_threshold": threshold}
    ns = base_namespace(root, trajs, their_args(s, threshold))
    for key, value in extra.items():
        setattr(ns["args"], key, value)
    recs, where = family_outer_steps(root, file, ns, s, init["images"], init["logits"])
    inputs = {
        "net": NET, "settings": s, "trajectories": trajs, "candidates": cand, "pool": POOL,
        "images": init["images"], "labels": torch.arange(NET["num_classes"]).repeat_interleave(s["ipc"]),
        "label_logits": init["logits"], "syn_lr": torch.tensor(s["lr_teacher_init"]), "perm_seed": PERM_SEED,
        "draws": draws_of(recs), "window": {"windows": WINDOWS, "its": WINDOW_ITS},
    }  # fmt: skip
    outputs = {
        "init": {"rows": init["rows"], "logits": init["logits"]},
        "window": window_table(root / file),
        "iterations": [{k: v for k, v in r.items() if k not in ("randint", "perms")} for r in recs],
    }
    ours = ddlight_outer_steps(name, inputs)
    keys = ["loss", "grad_images", "grad_labels", "grad_syn_lr", "images", "labels", "syn_lr"]
    keys += ["bound", "skipped"]
    rows = rows_of(outputs["iterations"], ours, keys)
    from tests.helpers.trajectory import parity_label_init

    got = parity_label_init(inputs)
    rows += [("init rows", got["rows"], init["rows"]), ("init logits", got["logits"], init["logits"])]
    skipped = torch.stack([r["skipped"] for r in outputs["iterations"]])
    print(f"{name}: threshold {threshold:.4f} skips iterations {skipped.nonzero().flatten().add(1).tolist()}")
    return inputs, outputs, rows, f"{init['where']}, {where}"


def run(official_root: Path, commit: str, out: Path | None) -> bool:
    s = {**SETTINGS, "label_expert_epoch": LABEL_EPOCH}
    inputs, outputs, rows, where = family_run("datm", Path(official_root), FILE, s, {})
    ok = fixtures.print_rows("datm", rows, RTOL)
    from tests.helpers.trajectory import window_bounds

    same = bool((window_bounds(inputs) == outputs["window"]).all())
    print(f"  window table ({len(WINDOWS)} x {len(WINDOW_ITS)} iterations) {'ok' if same else 'DIFFERS'}")
    if out is not None:
        note = "as mtt.pt, plus soft labels, the growing window and the loss threshold"
        m = fixtures.manifest(REPO, commit, FILE, f"main(), sliced ({where})", RTOL, ATOL, note)
        print("wrote", fixtures.write("datm", m, inputs, outputs, out))
    return ok and same
