"""PAD (NUS-HPC-AI-Lab/PAD ``distill/PAD.py``) against ddlight's :class:`~ddlight.methods.trajectory.PAD`.

``PAD.py`` is ``DATM.py`` (the same label initialisation, window and threshold, whitespace aside) plus
its FIEM, and :mod:`.datm`'s comparison runs on it unchanged: the label-init slices, the window table and
five outer steps. What the released file adds is in the outer step (lines 557-566 at 2a4bc91): the
per-parameter distances ``(student - target)^2`` are sorted and the ``int(loss_ratio * P)`` smallest
leave both norms. The ``depth_ratio`` keys of its configs are read by nothing in this file (they belong
to the ``PAD_depth.py`` of its history), so ddlight runs here with ``depth_ratio: 0`` and
``loss_ratio: 0.5`` (CIFAR-10 IPC 10's). The rule only applies when ``args.loss_threshold_low < 1``, a
key that neither ``utils/cfg.py`` nor any released config defines: as released, the line raises
``AttributeError``. The harness sets it to 0 (the branch the configs' ``loss_ratio`` is meant for).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.parity import fixtures
from benchmarks.parity.datm import SETTINGS as DATM_SETTINGS
from benchmarks.parity.datm import family_run

REPO = "NUS-HPC-AI-Lab/PAD"
RTOL = 1e-5
ATOL = 1e-5
FILE = "distill/PAD.py"
LOSS_RATIO = 0.5

SETTINGS = {
    **DATM_SETTINGS,
    "label_expert_epoch": 1,
    "loss_ratio": LOSS_RATIO,
    "depth_ratio": 0.0,
    "ddlight": (*DATM_SETTINGS["ddlight"], "loss_ratio", "depth_ratio"),
}


def run(official_root: Path, commit: str, out: Path | None) -> bool:
    extra = {"loss_ratio": LOSS_RATIO, "loss_threshold_low": 0.0}
    inputs, outputs, rows, where = family_run(
        "pad", Path(official_root), FILE, dict(SETTINGS), extra, "if args.parall_eva == False:"
    )
    ok = fixtures.print_rows("pad", rows, RTOL)
    if out is not None:
        note = (
            f"as datm.pt, with PAD.py's loss_ratio mask ({LOSS_RATIO}); args.loss_threshold_low = 0 "
            "supplied (undefined in the release)"
        )
        m = fixtures.manifest(REPO, commit, FILE, f"main(), sliced ({where})", RTOL, ATOL, note)
        print("wrote", fixtures.write("pad", m, inputs, outputs, out))
    return ok
