"""One trajectory-matching iteration (MTT/DATM/PAD's unrolled student, ConvNet-3 w128 on MNIST-shaped
images, DSA, soft labels and a learnable rate), timed for the whole graph and for the segments a memory
budget chooses, in one command: seconds per iteration, the graph autograd keeps, and the largest
difference of the gradients on the images, the soft labels and ``syn_lr`` between the two.

Timing does not depend on the expert's values, so the start and target parameters are a fresh network's
and a small perturbation of them; ``--profile`` prints torch.profiler's table of the whole-graph path.

    python benchmarks/trajectory_speed.py --ipc 1 10 50 --syn-steps 20 [--budget-mb 500] [--profile]

``--rss`` runs each path in a process of its own, alternating (whole, budget, whole, budget, ...), and prints
each one's peak resident memory beside its time: what a distillation's peak is made of, without the data
module and the expert buffer (tens of MB for MNIST); a third path is the whole graph with ATen's ReLU and
pooling (``ConvNet(lean_graph=False)``), the graph before bool masks. ``--budget-mb`` defaults to the
distillers' default.

``--official PATH`` (with ``--rss``) adds the authors' MTT iteration from a checkout of
GeorgeCazenavette/mtt-distillation: their outer step, sliced from ``distill.py`` as the parity harness
slices it (:mod:`benchmarks.parity.mtt`), with their ``ReparamModule``, ``networks.ConvNet`` and
``DiffAugment`` (sliced from ``utils.py``, whose module imports need a plotting stack) at the same sizes:
the whole synthetic set as one batch (their ``batch_syn`` default), hard labels, their DSA strategy (flip
included), their image and rate optimizers' steps inside the timed span. Every process runs under the heap
policy ``--mmap-threshold`` names (unset: ddlight's default), the authors' too.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_data import add_heap_option, apply_heap, matmul_peak_gflops
from torch.utils.flop_counter import FlopCounterMode

from ddlight.data import MNISTDataModule
from ddlight.methods.trajectory import unroll
from ddlight.methods.trajectory.buffer import flatten_parameters, parameter_layout, unflatten_parameters
from ddlight.methods.trajectory.unroll import DEFAULT_MEMORY_BUDGET_MB
from ddlight.models import ConvNet
from ddlight.ops.augment import DSA, strategy_for
from ddlight.ops.losses import matching_loss


def setup(ipc: int, syn_steps: int, seed: int = 0, lean_graph: bool = True):
    torch.manual_seed(seed)
    # lean: the distillers' default (None, decided per pass by student_steps); otherwise ATen's ops throughout
    net = ConvNet(channel=1, num_classes=10, width=128, im_size=28, lean_graph=None if lean_graph else False)
    net.requires_grad_(False)
    names, shapes, sizes = parameter_layout(net)
    unflatten = functools.partial(unflatten_parameters, names=names, shapes=shapes, sizes=sizes)
    start = flatten_parameters(net)
    target = start + 0.01 * torch.randn_like(start)
    learned = {
        "images": torch.randn(10 * ipc, 1, 28, 28, requires_grad=True),
        "labels": torch.randn(10 * ipc, 10, requires_grad=True),
        "syn_lr": torch.tensor(0.01, requires_grad=True),
    }
    dsa = DSA(strategy_for("auto", MNISTDataModule.flip_invariant))
    gen = torch.Generator().manual_seed(seed)
    batches = unroll.minibatch_schedule(10 * ipc, 10 * ipc, syn_steps, gen)
    plan = unroll.IterationPlan(0, 0, 1, batches, [dsa.sample(len(b), gen, share_op=True) for b in batches])
    run = functools.partial(unroll.student_steps, net, dsa, unflatten)
    return run, start, target, learned, plan


def iteration(run, start, target, learned, plan, segments: int) -> tuple[float, float, list[torch.Tensor]]:
    for t in learned.values():
        t.grad = None
    saved = unroll.SavedBytes()
    t0 = time.perf_counter()
    with saved:
        end = unroll.unroll_student(
            run, start, plan, learned["images"], learned["labels"], learned["syn_lr"], segments
        )
        loss = matching_loss(end, start, target)
    loss.backward()
    return time.perf_counter() - t0, saved.megabytes, [t.grad.clone() for t in learned.values()]


def iteration_gflop(run, start, target, learned, plan) -> float:
    """FLOPs of one whole-graph iteration (forward, unrolled SGD steps, outer backward), in GFLOP."""
    counter = FlopCounterMode(display=False)
    with counter:
        iteration(run, start, target, learned, plan, 0)
    return counter.get_total_flops() / 1e9


def single(ipc: int, syn_steps: int, segments: int, repeats: int, lean_graph: int = 1) -> None:
    """One path alone in this process: its best time and the process's peak RSS, as one JSON line."""
    run, start, target, learned, plan = setup(ipc, syn_steps, lean_graph=bool(lean_graph))
    iteration(run, start, target, learned, plan, segments)  # warm-up
    seconds = min(iteration(run, start, target, learned, plan, segments)[0] for _ in range(repeats))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_rss_gb": peak_gb}))


def official_setup(root: Path, ipc: int, syn_steps: int, seed: int = 0):
    """Their sliced outer step and the namespace it runs in (:func:`benchmarks.parity.mtt.their_namespace`)
    at this benchmark's sizes: a one-expert buffer of a fresh ConvNet-3 w128 and two perturbed epochs (in
    ddlight's flat layout, which is theirs), the whole set as one batch, DSA with their strategy."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.parity, run as a script
    from benchmarks.parity.mtt import OUTER_START, their_namespace, their_slice

    net = {"channel": 1, "num_classes": 10, "width": 128, "depth": 3, "im_size": 28}
    settings = {
        "max_start_epoch": 1, "expert_epochs": 2, "syn_steps": syn_steps, "batch_syn": 10 * ipc,
        "lr_img": 1000.0, "lr_lr": 1e-5,
    }  # fmt: skip
    torch.manual_seed(seed)
    start = flatten_parameters(ConvNet(**net))
    trajs = torch.stack([start, *(start + 0.01 * torch.randn_like(start) for _ in range(2))])[None]
    images, labels = torch.randn(10 * ipc, 1, 28, 28), torch.arange(10).repeat_interleave(ipc)
    ns = their_namespace(
        Path(root), settings, trajs, images, labels, torch.tensor(0.01), net,
        dsa_strategy="color_crop_cutout_flip_scale_rotate",
    )  # fmt: skip
    code, label = their_slice(Path(root) / "distill.py", OUTER_START, "optimizer_lr.step(")
    return compile(code, label, "exec"), ns


def single_official(root: Path, ipc: int, syn_steps: int, repeats: int) -> None:
    """The authors' iteration alone in this process, as :func:`single`."""
    code, ns = official_setup(root, ipc, syn_steps)
    times = []
    for _ in range(repeats + 1):  # the first is the warm-up
        t0 = time.perf_counter()
        exec(code, ns)
        times.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"seconds": min(times[1:]), "peak_rss_gb": peak_gb}))


def whole_graph_gflop(ipc: int, syn_steps: int) -> float:
    """One whole-graph iteration's GFLOP without holding its graph: every student step costs the same, so
    the count of 1 and 2 steps gives it for any number (the useful work of every path; recomputation
    adds its own)."""
    one, two = (iteration_gflop(*setup(ipc, s)) for s in (1, 2))
    return one + (syn_steps - 1) * (two - one)


AUTHORS = "authors' MTT (distill.py)"


def rss_rows(a: argparse.Namespace) -> None:
    peak = matmul_peak_gflops()
    print(
        f"fp32 matmul peak (2048^2) {peak:.0f} GFLOP/s; GFLOP/s and % of it: a whole-graph iteration's FLOPs"
    )
    print(
        f"{'IPC':>4} {'path':>30} {'s/iter':>8} {'peak RSS GB':>12} {'vs whole':>9} {'vs ATen whole':>14}"
        f" {'GFLOP/s':>8} {'of peak':>8}" + (f" {'vs authors':>11}" if a.official else "")
    )
    for ipc in a.ipc:
        gflop = whole_graph_gflop(ipc, a.syn_steps)
        run, start, target, learned, plan = setup(ipc, a.syn_steps)
        segments = unroll.segments_from_budget(
            run, start, plan, learned["images"], learned["labels"], learned["syn_lr"], a.budget_mb
        )
        del run, start, target, learned, plan
        # (segments, lean_graph): ConvNet's ATen ReLU/pooling (lean_graph=False) is the graph before masks
        paths = {
            "whole graph": (0, 1),
            f"budget: {segments} segment(s)": (segments, 1),
            "whole graph, ATen ReLU/pool": (0, 0),
        }
        if a.official:
            paths[AUTHORS] = (0, 0)
        best: dict[str, dict] = {}
        for _ in range(a.rounds):  # alternated, so a neighbour's load falls on both paths alike
            for name, (s, lean) in paths.items():
                cmd = [sys.executable, __file__, "--single", f"{ipc}:{a.syn_steps}:{s}:{a.repeats}:{lean}"]
                cmd += ["--official", str(a.official)] if name == AUTHORS else []
                cmd += [] if a.mmap_threshold is None else ["--mmap-threshold", str(a.mmap_threshold)]
                out = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
                )
                if name not in best or out["seconds"] < best[name]["seconds"]:
                    best[name] = {
                        **out,
                        "peak_rss_gb": max(out["peak_rss_gb"], best.get(name, out)["peak_rss_gb"]),
                    }
        t0, t_aten = best["whole graph"]["seconds"], best["whole graph, ATen ReLU/pool"]["seconds"]
        for name, r in best.items():
            t = r["seconds"]
            print(
                f"{ipc:>4} {name:>30} {t:>8.3f} {r['peak_rss_gb']:>12.2f}"
                f" {t / t0:>8.3f}x {t / t_aten:>13.3f}x {gflop / t:>8.0f} {100 * gflop / t / peak:>7.0f}%"
                + (f" {best[AUTHORS]['seconds'] / t:>10.3f}x" if a.official else "")
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ipc", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--syn-steps", type=int, default=20)
    ap.add_argument(
        "--budget-mb",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        help="memory_budget_mb of the segmented path",
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--rss", action="store_true", help="each path in its own process, with its peak RSS")
    ap.add_argument("--rounds", type=int, default=2, help="--rss: alternated rounds per path")
    ap.add_argument(
        "--official", type=Path, help="--rss: a checkout of mtt-distillation, timed as one more path"
    )
    ap.add_argument("--single", help=argparse.SUPPRESS)  # ipc:syn_steps:segments:repeats:lean, for --rss
    add_heap_option(ap)
    a = ap.parse_args()
    heap = apply_heap(a.mmap_threshold)  # every process of --rss applies it, the authors' too
    if not a.single:
        print(heap)
    if a.single and a.official:
        ipc, syn_steps, _, repeats, _ = (int(v) for v in a.single.split(":"))
        single_official(a.official, ipc, syn_steps, repeats)
        return
    if a.single:
        single(*(int(v) for v in a.single.split(":")))
        return
    if a.official and not a.rss:
        ap.error("--official times the authors' iteration beside the --rss paths: add --rss")
    if a.official and not (a.official / "distill.py").is_file():
        ap.error(f"--official {a.official}: no distill.py (a GeorgeCazenavette/mtt-distillation checkout)")
    if a.rss:
        rss_rows(a)
        return
    threads = torch.get_num_threads()
    print(f"ConvNet-3 w128, MNIST-shaped, {a.syn_steps} student steps, DSA, soft labels; threads {threads}")
    head = "max |grad diff| images / labels / syn_lr"
    print(f"{'IPC':>4} {'path':>22} {'s/iter':>8} {'graph MB':>9} {head:>44}")
    for ipc in a.ipc:
        run, start, target, learned, plan = setup(ipc, a.syn_steps)
        segments = unroll.segments_from_budget(
            run, start, plan, learned["images"], learned["labels"], learned["syn_lr"], a.budget_mb
        )
        results = {}
        for name, s in (("whole graph", 0), (f"budget: {segments} segment(s)", segments)):
            iteration(run, start, target, learned, plan, s)  # warm-up
            times = [iteration(run, start, target, learned, plan, s) for _ in range(a.repeats)]
            results[name] = (min(t for t, _, _ in times), times[-1][1], times[-1][2])
        (t0, mb0, g0), *others = results.values()
        for name, (t, mb, g) in results.items():
            diffs = " / ".join(f"{float((x - y).abs().max()):.2e}" for x, y in zip(g, g0, strict=True))
            print(f"{ipc:>4} {name:>22} {t:>8.3f} {mb:>9.1f} {diffs:>44}", flush=True)
        gflop, peak = iteration_gflop(run, start, target, learned, plan), matmul_peak_gflops()
        print(
            f"{ipc:>4} roofline: {gflop:.1f} GFLOP per iteration; fp32 matmul peak {peak:.0f} GFLOP/s; the "
            f"whole graph reached {gflop / t0:.0f} GFLOP/s = {100 * gflop / t0 / peak:.0f} % of it; at the "
            f"peak the iteration would take {gflop / peak:.3f} s",
            flush=True,
        )
        if a.profile:
            from torch.profiler import profile

            with profile() as prof:
                iteration(run, start, target, learned, plan, 0)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
