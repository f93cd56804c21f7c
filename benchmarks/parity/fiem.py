"""PAD's FIEM mask (NUS-HPC-AI-Lab/PAD ``distill/PAD.py``) against
:func:`~ddlight.methods.trajectory.fiem.loss_ratio_mask`: exactly which parameters leave the loss at each
ratio.

Their lines 557-566 at 2a4bc91 (``param_losses = ... mse_loss(..., reduction="none")`` to the
``loss_ratio`` branch's ``keep_indices``) run as a sliced copy on student and target vectors of the narrow
ConvNet's layout (rows of the fixtures' expert trajectories, the student a few SGD-like steps off its
start), at ratios 0 to 0.9; the kept index sets are the fixture. The depth rule (``depth_ratio``,
ddlight's :func:`~ddlight.methods.trajectory.fiem.fiem_mask`) has no counterpart in this release (its
configs' ``depth_ratio`` key is read by no code), so it cannot be compared here: a named deviation in
``docs/parity.md``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.parity import fixtures
from benchmarks.parity.mtt import expert_trajectories, run_slice, their_slice

REPO = "NUS-HPC-AI-Lab/PAD"
FILE = "distill/PAD.py"
RATIOS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9]


def run(official_root: Path, commit: str, out: Path | None) -> bool:
    from ddlight.methods.trajectory.fiem import loss_ratio_mask

    trajs = expert_trajectories()
    start, target = trajs[0, 1], trajs[0, 3]
    g = torch.Generator().manual_seed(5)
    student = start + 0.6 * (target - start) + 1e-3 * torch.randn(start.shape, generator=g)
    first, last = "param_losses = torch.nn.functional.mse_loss", "keep_indices = loss_indices["
    code, where = their_slice(Path(official_root) / FILE, first, last)
    kept, ok = [], True
    print(f"fiem: kept parameters of {start.numel()} at each loss_ratio ({where})")
    for r in RATIOS:
        ns = {"torch": torch, "student_params": [student], "target_params": target, "starting_params": start,
              "args": SimpleNamespace(loss_ratio=r, loss_threshold_low=0.0)}  # fmt: skip
        theirs = torch.zeros(start.numel(), dtype=torch.bool)
        theirs[run_slice(code, where, ns)["keep_indices"]] = True
        ours = loss_ratio_mask(student, target, r)
        same = torch.equal(ours, theirs)
        ok &= same
        verdict = "same" if same else "DIFFERS"
        print(f"  {r:<5} theirs {int(theirs.sum()):6d} ours {int(ours.sum()):6d}  {verdict}")
        kept.append(theirs)
    if out is not None:
        m = fixtures.manifest(REPO, commit, FILE, f"main(), FIEM keep_indices ({where})", 0.0, 0.0,
                              "kept sets must be equal; args.loss_threshold_low = 0 supplied")  # fmt: skip
        inputs = {"student": student, "target": target, "start": start, "ratios": RATIOS}
        print("wrote", fixtures.write("fiem", m, inputs, {"kept": torch.stack(kept)}, out))
    return ok
