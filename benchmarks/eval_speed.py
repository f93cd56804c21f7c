"""Synthetic-set evaluation speed: one ConvNet-3 trained for ``--epochs`` on a 100-image MNIST set (IPC 10),
ddlight's evaluator against a reference-style loop (DataLoader over a TensorDataset, batch 256, DSA per
batch, whole-batch forward, as in DataDAM's ``evaluate_synset``) run by the same command.

    python benchmarks/eval_speed.py --epochs 300 --runs 1 5 --precision 32-true bf16-mixed
    python benchmarks/eval_speed.py --epochs 300 --dataset cifar10-generated --no-reference

``--precision bf16-mixed`` runs ddlight's loop under bf16 autocast (AVX512-BF16 on these CPUs); the
reference-style loop stays fp32, as the released code runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from bench_data import (
    COMPILE_CHOICES,
    add_heap_option,
    apply_heap,
    compile_value,
    make_datamodule,
    matmul_peak_gflops,
    reference_convnet,
)
from distill_speed import peak_rss_gb

from ddlight.evaluation import Recipe, Runs
from ddlight.evaluation.recipe import lr_factor
from ddlight.models import ConvNet
from ddlight.ops.augment import DSA
from ddlight.ops.flops import count_macs


def reference_style(images: torch.Tensor, labels: torch.Tensor, epochs: int, shape: dict) -> float:
    net = reference_convnet(micro_batch=0, **shape)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=256, shuffle=True
    )
    dsa = DSA("color_crop_cutout_scale_rotate")
    t0 = time.perf_counter()
    for ep in range(epochs):
        for g in opt.param_groups:
            g["lr"] = 0.01 * lr_factor("step", ep, epochs)
        for x, y in loader:
            x = dsa(x, share_op=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the released loop reads the loss every batch
    return time.perf_counter() - t0


def ddlight_run(images, labels, dm, epochs: int, runs: int, precision: str, compile: str = "off") -> dict:
    net = ConvNet(compile=compile_value(compile), **dm.shape_args())
    res = Runs(net, Recipe(num_runs=runs, epochs=epochs)).fit(
        images, labels, dm.test_dataloader(), dm.name, precision=precision
    )
    return {"seconds": res["train_seconds_total"], "mean": res["mean"], "std": res["std"]}


def conv_ceiling(dm, images: torch.Tensor, precision: str, peak: float, reps: int = 5) -> str:
    """The step's convolutions alone (forward, weight and input gradients, on the chunks one forward of
    ``images`` gives them under this precision; no input gradient for the first, as in training): the
    share of the matmul peak that oneDNN's kernels reach at these shapes bounds what the whole step can
    reach."""
    net = ConvNet(**dm.shape_args())
    convs = [block[0] for block in net.blocks]
    seen: list[tuple[int, torch.Size, torch.Size]] = []  # (conv index, input shape, output shape)
    hooks = [
        c.register_forward_hook(lambda m, i, o, k=k: seen.append((k, i[0].shape, o.shape)))
        for k, c in enumerate(convs)
    ]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    with torch.no_grad(), autocast:
        net(images)
    for h in hooks:
        h.remove()
    inputs = [(convs[k], torch.randn(shape, requires_grad=k > 0)) for k, shape, _ in seen]

    def once() -> None:
        for conv, x in inputs:
            with autocast:
                out = conv(x)
            out.backward(torch.ones_like(out))

    once()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    seconds = (time.perf_counter() - t0) / reps
    flop = 0.0
    for k, shape, out_shape in seen:
        macs = out_shape.numel() * shape[1] * convs[k].weight[0, 0].numel()
        flop += 2 * macs * (3 if k > 0 else 2)
    gflops = flop / seconds / 1e9
    share = 100 * gflops / peak
    return (
        f"{precision} convolutions alone: {1000 * seconds:.0f} ms per step, {gflops:.0f} GFLOP/s"
        f" = {share:.0f} % of peak"
    )


def print_rows(rows: dict, refs: list[float], flop_per_run: float, peak: float) -> None:
    """One line per (precision, compile, runs): the median seconds over the rounds, share of the peak,
    accuracy, cost relative to one run, and the median of the per-round speed-ups over the reference run
    in the same round (this shared VM drifts within minutes, so only same-round ratios compare)."""
    one: dict[tuple, float] = {}
    for (precision, comp, runs), results in rows.items():
        seconds = statistics.median(r["seconds"] for r in results)
        share = runs * flop_per_run / seconds / 1e9 / peak
        tag = precision + ("" if comp == "off" else f" compile={comp}")
        line = f"ddlight, {runs} run(s), {tag:>10}: {seconds:7.1f} s  {100 * share:4.0f} % of peak"
        line += f"  acc {100 * results[0]['mean']:.2f} +- {100 * results[0]['std']:.2f} %"
        if runs == 1:
            one[(precision, comp)] = seconds
        elif (precision, comp) in one:
            line += f"  = {seconds / one[(precision, comp)]:.2f} x one run"
        if refs and runs == 1:
            ratios = [ref / r["seconds"] for ref, r in zip(refs, results, strict=True)]
            each = " ".join(f"{q:.2f}" for q in ratios)
            line += f"  speed-up {statistics.median(ratios):.2f}x (rounds: {each})"
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--precision", nargs="+", choices=["32-true", "bf16-mixed"], default=["32-true"])
    ap.add_argument("--runs", type=int, nargs="+", default=[1], help="num_runs to time, e.g. 1 5")
    ap.add_argument(
        "--dataset", default="mnist", help="mnist or cifar10-generated (benchmarks/bench_data.py)"
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the reference-style loop")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; rows print their medians")
    ap.add_argument(
        "--compile",
        nargs="+",
        choices=COMPILE_CHOICES,
        default=["off"],
        help="ConvNet compile for ddlight's rows (true: training forwards and backwards compiled too)",
    )
    add_heap_option(ap)
    args = ap.parse_args()
    print(apply_heap(args.mmap_threshold))  # before the first tensor: the reference runs under it too
    dm = make_datamodule(args.dataset)
    dm.setup()
    idx = torch.cat([torch.nonzero(dm.train_labels == c).flatten()[:10] for c in range(10)])
    images, labels = dm.normalize(dm.train_images[idx]), dm.train_labels[idx]
    peak = matmul_peak_gflops()
    macs = count_macs(ConvNet(**dm.shape_args()), tuple(images.shape[1:]))["macs"]
    flop_per_run = 3 * 2 * macs * len(images) * args.epochs  # forward + backward ~ 3 forwards
    print(f"{args.dataset}: ConvNet-3 w128, 100 images, {args.epochs} epochs, DSA (training only)")
    print(f"measured fp32 matmul peak (2048^2): {peak:.0f} GFLOP/s; {flop_per_run / 1e12:.2f} TFLOP per run")
    for precision in args.precision:
        print(conv_ceiling(dm, images, precision, peak), flush=True)
    refs: list[float] = []
    rows: dict[tuple, list[dict]] = {}
    for _ in range(args.rounds):  # interleaved: every row once per round
        if not args.no_reference:
            refs.append(reference_style(images, labels, args.epochs, dm.shape_args()))
        for precision in args.precision:
            for comp in args.compile:
                for runs in args.runs:
                    res = ddlight_run(images, labels, dm, args.epochs, runs, precision, comp)
                    rows.setdefault((precision, comp, runs), []).append(res)
    if refs:
        print(f"reference-style loop, 1 run, fp32 : {statistics.median(refs):7.1f} s")
    print_rows(rows, refs, flop_per_run, peak)
    print(f"peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
