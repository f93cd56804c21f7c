"""The report's figures (matplotlib, Agg: no display needed on a server or in CI).

Each figure is drawn only from the stages' outputs (grid PNGs the distillers wrote, TensorBoard loss
series, evaluation JSON) and written atomically, so a crash never leaves a truncated PNG that a rerun
would link to. A figure with nothing to show is not drawn, and the caller says so in the report.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ddlight.report.compare import COMPARE  # noqa: E402
from ddlight.report.study import STUDY, DatasetResults  # noqa: E402
from ddlight.report.tables import method_title  # noqa: E402
from ddlight.utils.io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, ".tmp.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _study_sets(r: DatasetResults) -> dict:
    """The Tables' sets; the Methods section's (``compare-...``) have their own table, not these panels."""
    return {k: s for k, s in r.sets.items() if not k.startswith(f"{COMPARE}-")}


def _title(key: str) -> str:
    section = key.startswith(f"{COMPARE}-")
    method, init, ipc = key.removeprefix(f"{COMPARE}-").split("-")
    return f"{method_title(method)}, {init} init, IPC {ipc[3:]}" + (" (Methods)" if section else "")


def grids(r: DatasetResults, path: Path) -> Path | None:
    """One panel per distilled set: the distiller's own grid.png (one row per class)."""
    sets = _study_sets(r)
    keys = [k for k in sets if sets[k].grid.is_file()]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.imshow(plt.imread(r.sets[key].grid))
        ax.set_title(_title(key), fontsize=9)
    fig.suptitle(f"{r.title}: synthetic sets (rows = classes, at most 20 images per class shown)")
    return _save(fig, path)


def loss_curves(r: DatasetResults, path: Path) -> Path | None:
    """Distillation loss per logged step, one panel per method (their losses are not comparable)."""
    sets = _study_sets(r)
    methods = sorted({k.split("-")[0] for k, s in sets.items() if s.loss})
    if not methods:
        return None
    fig, axes = plt.subplots(
        1, len(methods), figsize=(5.5 * len(methods), 4), squeeze=False, layout="constrained"
    )
    for ax, method in zip(axes.flat, methods, strict=True):
        for key, s in sets.items():
            if key.startswith(f"{method}-") and s.loss:
                steps, values = zip(*s.loss, strict=True)
                ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=_title(key))
        ax.set_title(f"{method_title(method)}: distill/loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        if all(v > 0 for s in sets.values() for _, v in s.loss):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"{r.title}: distillation loss curves")
    return _save(fig, path)


def acc_vs_ipc(r: DatasetResults, path: Path) -> Path | None:
    """Accuracy against IPC for the IPC sweep and the lossless-IPC probes, with the full-data line."""
    series: list[tuple[str, list[int], list[float], list[float]]] = []
    if r.sweep is not None:
        method, ipcs = r.sweep
        evs = [r.evals[(f"{method}-real-ipc{i}", r.net, STUDY)] for i in ipcs]
        series.append(
            (
                f"{method_title(method)} (Table VII)",
                ipcs,
                [e.mean.value for e in evs],
                [e.std.value for e in evs],
            )
        )
    if r.search is not None and r.search.probes:
        probes = sorted(r.search.probes, key=lambda p: p.ipc)
        series.append(
            (
                f"{method_title(r.search.method)} (IPC search)",
                [p.ipc for p in probes],
                [p.result.mean.value for p in probes],
                [p.result.std.value for p in probes],
            )
        )
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, x, y, err in series:
        ax.errorbar(x, [100 * v for v in y], yerr=[100 * e for e in err], marker="o", capsize=3, label=label)
    full = r.baselines[r.net].accuracy.value
    ax.axhline(100 * full, color="k", linestyle="--", label=f"full data ({100 * full:.2f} %)")
    ax.set_xscale("log")
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel(f"{r.net} test accuracy (%)")
    ax.set_title(f"{r.title}: accuracy vs IPC")
    ax.legend(fontsize=8)
    return _save(fig, path)


def acc_vs_time(r: DatasetResults, path: Path) -> Path | None:
    """Accuracy against the training time it cost: every synthetic set evaluated with the distillation
    network (ddlight's recipe), and the full data."""
    points = [(k, e) for (k, a, p), e in r.evals.items() if a == r.net and p == STUDY]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for key, e in points:
        ax.scatter(e.train_seconds_per_run.value, 100 * e.mean.value)
        ax.annotate(_title(key), (e.train_seconds_per_run.value, 100 * e.mean.value), fontsize=7)
    full = r.baselines[r.net]
    ax.scatter(full.train_seconds.value, 100 * full.accuracy.value, marker="*", s=160, color="k")
    ax.annotate("full data", (full.train_seconds.value, 100 * full.accuracy.value), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training wall time per network (s, log scale)")
    ax.set_ylabel(f"{r.net} test accuracy (%)")
    ax.set_title(f"{r.title}: accuracy vs training wall time")
    return _save(fig, path)


FIGURES = {
    "grids": (grids, "Synthetic sets per method and initialisation"),
    "loss": (loss_curves, "Distillation loss curves"),
    "acc_vs_ipc": (acc_vs_ipc, "Accuracy vs IPC, with the full-data accuracy"),
    "acc_vs_time": (acc_vs_time, "Accuracy vs training wall time"),
}
