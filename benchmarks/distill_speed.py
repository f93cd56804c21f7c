"""DataDAM and DM distillation speed and memory on this machine, against reference-style loops run by the
same command.

For each (method, batch_real, precision) a fresh subprocess runs ``DataDAM`` or ``DM`` through a Lightning
Trainer on real
MNIST (IPC 10, ConvNet-3 w128, real init) and reports the median seconds per iteration over ``--steps``
iterations after ``--warmup``, and the process's peak RSS. The baseline is a re-implementation of the
released DataDAM loop's structure (a Python loop over classes, a seeded DSA call per class for real and
for synthetic images, forward hooks that clone every ReLU output, real forward with autograd
bookkeeping, batch-norm ConvNet as released); DM's is ``main_DM.py``'s (a fresh instance-norm ConvNet
per iteration, per class a seeded DSA call per side, the real embedding computed with autograd
bookkeeping and detached, the synthetic one per class). Each runs in its own subprocess with the same data
and sizes; the printed ratio is baseline time / ddlight time.

    python benchmarks/distill_speed.py                      # both methods and batch sizes, fp32 and bf16
    python benchmarks/distill_speed.py --method dm --precision 32-true --steps 5
    python benchmarks/distill_speed.py --batch-real 64 --steps 20
    python benchmarks/distill_speed.py --dataset cifar10-generated --no-reference --precision 32-true
    python benchmarks/distill_speed.py --precision 32-true --compile off no_grad --rounds 3

``--compile no_grad`` adds rows with ``ConvNet(compile="no_grad")`` (the real side through torch.compile);
``--rounds`` repeats every row, interleaved, and prints each row's median and the median per-round ratio,
which a host whose speed drifts (a shared VM) needs.

The reference-style loop is MNIST-only (``--no-reference`` for other datasets).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_ddlight(
    batch_real: int,
    precision: str,
    steps: int,
    warmup: int,
    micro_batch: int,
    dataset: str = "mnist",
    method: str = "datadam",
    compile: str = "off",
) -> dict:
    import lightning as L
    import torch
    from bench_data import compile_value, make_datamodule

    from ddlight.methods import DM, DataDAM
    from ddlight.models import ConvNet

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.times.append(time.perf_counter() - self.t0)

    torch.manual_seed(0)
    dm = make_datamodule(dataset, episode_per_class=batch_real)
    model = {"datadam": DataDAM, "dm": DM}[method](
        ConvNet(micro_batch=micro_batch, compile=compile_value(compile), **dm.shape_args()),
        ipc=10,
        init="real",
        batch_real=batch_real,
        grid_every=0,
        export_dir=str(ROOT / "artifacts" / "bench_distill"),
    )
    timer = Timer()
    trainer = L.Trainer(
        max_steps=warmup + steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        accelerator="cpu",
    )
    trainer.fit(model, dm)
    return {"median_s": statistics.median(timer.times[warmup:]), "peak_rss_gb": peak_rss_gb()}


def run_reference_style(batch_real: int, steps: int, warmup: int, method: str = "datadam") -> dict:
    """The released loop's structure on MNIST IPC 10 (DataDAM: batch-norm ConvNet-3; DM: instance norm, as
    each was released), for comparison only."""
    from bench_data import reference_convnet

    from ddlight.data import MNISTDataModule

    dm = MNISTDataModule(data_dir=str(DATA))
    dm.setup()
    if method == "dm":
        times = dm_reference_loop(dm, reference_convnet, 10, batch_real, warmup + steps)
    else:
        make_net = lambda: reference_convnet(norm="batchnorm")  # noqa: E731
        times = reference_loop(dm, make_net, 10, batch_real, warmup + steps)
    return {"median_s": statistics.median(times[warmup:]), "peak_rss_gb": peak_rss_gb()}


def reference_state(dm, ipc: int) -> tuple:
    """What both reference loops start from, as the released scripts do: the whole training set as
    normalised float, per-class index lists, the first ``ipc`` real images of each class as the learned
    set, and SGD(lr 1, momentum 0.5) on it."""
    import torch

    torch.manual_seed(0)
    k = dm.num_classes
    images_all, labels_all = dm.normalize(dm.train_images), dm.train_labels
    indices_class = [torch.nonzero(labels_all == c).flatten() for c in range(k)]
    image_syn = images_all[torch.cat([ic[:ipc] for ic in indices_class])].clone().requires_grad_(True)
    return k, images_all, indices_class, image_syn, torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)


def update(opt, loss) -> None:
    """The released loops' image update, with their per-iteration ``loss.item()`` host sync."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()


def dm_reference_loop(
    dm, make_net, ipc: int, batch_real: int, iterations: int, strategy: str = "color_crop_cutout_scale_rotate"
) -> list[float]:
    """Per-iteration seconds of main_DM.py's structure: per class, the same seeded DSA draw for a real
    batch and the class's synthetic images, ``embed(real).detach()`` and ``embed(syn)``; not used by
    ddlight."""
    import torch

    from ddlight.ops.augment import DSA

    k, images_all, indices_class, image_syn, opt = reference_state(dm, ipc)
    dsa, zeros = DSA(strategy), torch.zeros(max(ipc, batch_real), dtype=torch.long)
    times: list[float] = []
    for it in range(iterations):
        t0 = time.perf_counter()
        net = make_net().train().requires_grad_(False)
        loss = torch.tensor(0.0)
        for c in range(k):
            idx = indices_class[c][torch.randperm(len(indices_class[c]))[:batch_real]]
            params = dsa.sample(1, torch.Generator().manual_seed(it * 100 + c))
            real = dsa.apply(images_all[idx], params, zeros[: len(idx)])
            syn = dsa.apply(image_syn[c * ipc : (c + 1) * ipc], params, zeros[:ipc])
            out_real = net.embed(real).detach()
            loss = loss + ((out_real.mean(0) - net.embed(syn).mean(0)) ** 2).sum()
        update(opt, loss)
        times.append(time.perf_counter() - t0)
    return times


def reference_loop(
    dm, make_net, ipc: int, batch_real: int, iterations: int, strategy: str = "color_crop_cutout_scale_rotate"
) -> list[float]:
    """Per-iteration seconds of the released DataDAM loop's structure (float training set, a fresh net
    per iteration, per-class DSA loop, ReLU outputs cloned by hooks, x100 weights); not used by ddlight."""
    import torch
    import torch.nn.functional as F

    from ddlight.ops.augment import DSA

    k, images_all, indices_class, image_syn, opt = reference_state(dm, ipc)
    dsa = DSA(strategy)

    def attention(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.abs().sum(1).view(f.shape[0], -1), p=2.0)

    times: list[float] = []
    for it in range(iterations):
        t0 = time.perf_counter()
        net = make_net().train().requires_grad_(False)  # the released loop sets each requires_grad
        acts: list[torch.Tensor] = []

        def keep(m, i, o, acts=acts):
            acts.append(o.clone())

        hooks = [m.register_forward_hook(keep) for m in net.modules() if isinstance(m, torch.nn.ReLU)]
        reals, syns = [], []
        for c in range(k):
            idx = indices_class[c][torch.randperm(len(indices_class[c]))[:batch_real]]
            params = dsa.sample(1, torch.Generator().manual_seed(it * 100 + c))
            reals.append(dsa.apply(images_all[idx], params, torch.zeros(len(idx), dtype=torch.long)))
            syns.append(
                dsa.apply(image_syn[c * ipc : (c + 1) * ipc], params, torch.zeros(ipc, dtype=torch.long))
            )
        out_real = net.embed(torch.cat(reals)).detach()
        real_acts, acts[:] = list(acts), []
        out_syn = net.embed(torch.cat(syns))
        syn_acts = list(acts)
        for h in hooks:
            h.remove()
        loss = torch.tensor(0.0)
        for layer in range(len(real_acts) - 1):
            ra = attention(real_acts[layer].detach()).view(k, batch_real, -1).mean(1)
            sa = attention(syn_acts[layer]).view(k, ipc, -1).mean(1)
            loss = loss + 100 * ((ra - sa) ** 2).sum()
        gap = out_real.view(k, batch_real, -1).mean(1) - out_syn.view(k, ipc, -1).mean(1)
        loss = loss + 100 * 0.01 * (gap**2).sum()
        update(opt, loss)
        times.append(time.perf_counter() - t0)
    return times


def worker(args: argparse.Namespace) -> None:
    from bench_data import apply_heap

    apply_heap(args.mmap_threshold)  # both sides: the reference's process too
    if args.reference:
        res = run_reference_style(args.batch_real[0], args.steps, args.warmup, args.method[0])
    else:
        res = run_ddlight(
            args.batch_real[0],
            args.precision[0],
            args.steps,
            args.warmup,
            args.micro_batch,
            args.dataset,
            args.method[0],
            args.compile[0],
        )
    print("RESULT " + json.dumps(res), flush=True)


def spawn(extra: list[str], script: str = __file__) -> dict:
    """Run ``script --worker <extra>`` in a fresh process (its own peak RSS) and return its RESULT."""
    out = subprocess.run([sys.executable, script, "--worker", *extra], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark worker failed:\n{out.stderr[-3000:]}")


def main() -> None:
    from bench_data import add_heap_option

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", nargs="+", default=["datadam", "dm"], choices=["datadam", "dm"])
    ap.add_argument("--batch-real", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--precision", nargs="+", default=["32-true", "bf16-mixed"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--micro-batch", type=int, default=16, help="ConvNet micro_batch (0: whole batch)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference-style baseline")
    ap.add_argument(
        "--compile",
        nargs="+",
        default=["off"],
        choices=["off", "no_grad"],
        help="ConvNet compile for ddlight's rows (no_grad: torch.compile of the graph-free real side)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every row this many times, interleaved, and report medians (noisy hosts)",
    )
    ap.add_argument(
        "--dataset", default="mnist", help="mnist or cifar10-generated (benchmarks/bench_data.py)"
    )
    add_heap_option(ap)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    common = [
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--micro-batch",
        str(args.micro_batch),
        "--dataset",
        args.dataset,
    ]
    if args.mmap_threshold is not None:
        common += ["--mmap-threshold", str(args.mmap_threshold)]
    for method in args.method:
        print_method(method, args, common)


def convolution_gflop(dataset: str, batch_real: int, ipc: int = 10) -> float:
    """GFLOP of one iteration's convolutions and classifier (fvcore's MACs, 2 FLOP each), the work both
    sides do alike: a graph-free forward of the real batch, and the synthetic set's forward and its
    input-gradient backward (about one forward again; the network's weights take no gradient)."""
    from bench_data import make_datamodule

    from ddlight.models import ConvNet
    from ddlight.ops.flops import count_macs

    dm = make_datamodule(dataset)
    shape = (dm.channels, *dm.image_size)
    macs = float(count_macs(ConvNet(**dm.shape_args()), shape)["macs"])
    return 2 * macs * dm.num_classes * (batch_real + 2 * ipc) / 1e9


def print_method(method: str, args: argparse.Namespace, common: list[str]) -> None:
    from bench_data import matmul_peak_gflops

    common = [*common, "--method", method]
    title = {"datadam": "DataDAM", "dm": "DM"}[method]
    peak = matmul_peak_gflops()
    policy = "unset (ddlight's default)" if args.mmap_threshold is None else args.mmap_threshold
    print(f"glibc heap for both sides: --mmap-threshold {policy} (ddlight/utils/memory.py)")
    print(
        f"{title}, {args.dataset} IPC 10, ConvNet-3 w128; median of {args.steps} iterations after "
        f"{args.warmup} warm-up; {args.rounds} interleaved round(s), median of each row's rounds; "
        f"fp32 matmul peak (2048^2) {peak:.0f} GFLOP/s"
    )
    print(
        f"{'batch_real':>10} {'impl':>28} {'s/iter':>8} {'peak RSS GB':>12} {'conv GFLOP/s':>13} "
        f"{'of peak':>8} {'speed-up':>9}"
    )
    for b in args.batch_real:
        gflop = convolution_gflop(args.dataset, b)
        rows: dict[str, list[str]] = {}
        if not args.no_reference:
            rows["reference-style fp32"] = ["--reference", "--batch-real", str(b), *common]
        for p in args.precision:
            for c in args.compile:
                label = f"ddlight {p}" + (" compiled" if c != "off" else "")
                rows[label] = ["--batch-real", str(b), "--precision", p, "--compile", c, *common]
        # Rounds interleave the rows, so a host that slows down for a while slows every row alike.
        results: dict[str, list[dict]] = {label: [] for label in rows}
        for _ in range(args.rounds):
            for label, extra in rows.items():
                results[label].append(spawn(extra))
        ref = results.get("reference-style fp32")
        for label, res in results.items():
            s = statistics.median(r["median_s"] for r in res)
            rss = max(r["peak_rss_gb"] for r in res)
            ratio, rounds = "-", " ".join(f"{r['median_s']:.3f}" for r in res)
            if ref:  # the median of per-round ratios: each round's rows ran back to back
                per_round = [a["median_s"] / r["median_s"] for a, r in zip(ref, res, strict=True)]
                ratio = f"{statistics.median(per_round):.2f}x"
                rounds += "  (" + " ".join(f"{x:.2f}x" for x in per_round) + ")"
            rate = gflop / s
            line = f"{b:>10} {label:>28} {s:>8.3f} {rss:>12.2f}"
            line += f" {rate:>13.0f} {100 * rate / peak:>7.0f}% {ratio:>9}"
            print(line + (f"   rounds: {rounds}" if args.rounds > 1 else ""), flush=True)


if __name__ == "__main__":
    main()
