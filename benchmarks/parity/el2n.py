"""PAD's FIEX curriculum (NUS-HPC-AI-Lab/PAD ``buffer/buffer_CL.py``) against
:func:`~ddlight.methods.trajectory.fiex.fiex_schedule`: exactly which samples each expert epoch trains on,
given one difficulty score per sample.

Their per-epoch selection (lines 58-71 at 2a4bc91, ``if e <= args.add_end_epoch:`` to the last
``indices = sorted_diff_indices[...]``) runs as a sliced copy with their ``linear_cl_scheduler_acse``
(``utils/utils_cl_scheduler.py``, imported from the checkout) on a (classes, per_class) table of sample
indices sorted easy to hard, the layout of their ``data_indices/*.pt``; ``data_size_by_class`` (5000,
CIFAR-10's, assigned at line 55 outside the slice) is the small set's per-class count. The table is built
from the scores, low = easy (how PAD slices it: the first columns train first). The phases are the
README's CIFAR-10 command scaled to 12 epochs (init_ratio 0.75, add_end 4, rm_first 6, rm_second 8,
ratios 0.1 and 0.2), labels interleaved so that a per-class slice is not a contiguous one.

The scores themselves: PAD ships precomputed orders (``data_indices``: GraNd, Uncertainty, from
DeepCore) and no scoring code, so ddlight's EL2N (:func:`~ddlight.methods.trajectory.el2n.el2n_scores`)
has no authors' counterpart in this repository; a named deviation in ``docs/parity.md``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.parity import fixtures, official
from benchmarks.parity.mtt import run_slice, their_slice

REPO = "NUS-HPC-AI-Lab/PAD"
FILE = "buffer/buffer_CL.py"
PHASES = {"init_ratio": 0.75, "add_end_epoch": 4, "rm_epoch_first": 6, "rm_epoch_second": 8,
          "rm_easy_ratio_first": 0.1, "rm_easy_ratio_second": 0.2}  # fmt: skip
EPOCHS = 12
CLASSES, PER_CLASS = 3, 30


def run(official_root: Path, commit: str, out: Path | None) -> bool:
    from ddlight.methods.trajectory.fiex import FIEX, fiex_schedule

    root = Path(official_root)
    sched = official.load(root / "utils", "utils_cl_scheduler")
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(CLASSES * PER_CLASS, generator=g)
    labels = torch.arange(CLASSES).repeat(PER_CLASS)  # interleaved 0,1,2,0,1,2,...
    # (classes, per_class) sample indices, easiest first: data_indices/*.pt's layout
    members = [torch.nonzero(labels == c).flatten() for c in range(CLASSES)]
    table = torch.stack([m[scores[m].argsort()] for m in members])
    first, last = "if e <= args.add_end_epoch:", "= args.rm_easy_ratio_second"
    code, where = their_slice(root / FILE, first, last, more=1)
    theirs, ok = [], True
    print(f"el2n/fiex: active samples per epoch ({where}, {CLASSES} classes x {PER_CLASS})")
    for e in range(EPOCHS):
        ns = {
            "e": e,
            "args": SimpleNamespace(**PHASES),
            "sorted_diff_indices": table,
            "data_size_by_class": PER_CLASS,
            "linear_cl_scheduler_acse": sched.linear_cl_scheduler_acse,
        }
        idx = run_slice(code, where, ns)["indices"].sort().values
        ours = fiex_schedule(scores, e, labels, FIEX(**PHASES))
        same = torch.equal(ours, idx)
        ok &= same
        print(f"  epoch {e:2d}: theirs {len(idx):3d} ours {len(ours):3d}  {'same' if same else 'DIFFERS'}")
        theirs.append(idx)
    if out is not None:
        note = "active index sets must be equal; EL2N scores: no authors' code (PAD ships orders)"
        m = fixtures.manifest(REPO, commit, FILE, f"train(), FIEX selection ({where})", 0.0, 0.0, note)
        inputs = {"scores": scores, "labels": labels, "phases": PHASES, "epochs": EPOCHS}
        print("wrote", fixtures.write("el2n", m, inputs, {"indices": theirs}, out))
    return ok
