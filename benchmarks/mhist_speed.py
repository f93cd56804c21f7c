"""The headline command's cost: DataDAM at ``configs/datadam_mhist.yaml``'s settings (IPC 50, 128 real
images per class, ConvNet-7 w32 on 224x224 RGB) on an MHIST-shaped set in the official layout.

The set (2,175 train / 977 test PNGs, train HP 1,545 / SSA 630) is generated once under ``--data-dir``
by :func:`ddlight.data.mhist_layout.write_mhist_layout` and read by ``MHISTDataModule`` as the real files
would be; the cost does not depend on the pixels. Each variant runs in its own subprocess (its own peak
RSS): the reference-style loop (the authors' structure: batch-norm ConvNet-7, a Python loop over classes
with a seeded DSA call per class and side, forward hooks that clone every ReLU output), ddlight as the
config ran before this benchmark (16-image micro-batches, NCHW), and the 224x224 layouts (4-image
micro-batches, the synthetic side in chunks of 10 images; NHWC everywhere, NCHW, or NHWC for the no-grad
real forward only = ``tuned``, the config's; ``compiled`` = tuned with ``ConvNet(compile="no_grad")``,
the real forward through torch.compile), fp32 and, where the CPU has bf16 units, bf16-mixed. Also
printed: the real forward's share of the measured fp32 matmul peak, and the projected wall time of the
config and its evaluation.

    python benchmarks/mhist_speed.py                      # everything, 3 iterations after 1 warm-up
    python benchmarks/mhist_speed.py --variants tuned --steps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "datadam_mhist.yaml"
EVAL_CONFIG = ROOT / "configs" / "mhist" / "evaluate.yaml"
VARIANTS = {  # name -> (micro_batch, channels_last, syn_chunk, compile)
    "before": (16, False, 0, False),
    "nhwc": (4, True, 10, False),  # NHWC everywhere: group norm's backward is ~3x slower than in NCHW
    "nchw": (4, False, 10, False),
    "tuned": (4, "no_grad", 10, False),  # NHWC for the real (no-grad) forward only
    "compiled": (4, "no_grad", 10, "no_grad"),  # tuned + the real forward through torch.compile
}
LAYOUT = {True: " NHWC", False: "", "no_grad": " NHWC-no-grad"}


def layout_arg(text: str) -> bool | str:
    return {"true": True, "false": False}.get(text, text)


def has_bf16_units() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cli_parts(
    data_dir: str, micro_batch: int, channels_last: bool | str, syn_chunk: int, compile: bool | str
):
    """The config's model and data module, as ``python -m ddlight fit`` builds them."""
    from ddlight.cli import DDLightCLI

    args = ["--config", str(CONFIG), "--data.init_args.data_dir", data_dir, "--trainer.logger", "false"]
    args += ["--model.init_args.net.init_args.micro_batch", str(micro_batch)]
    args += ["--model.init_args.net.init_args.channels_last", str(channels_last).lower()]
    args += ["--model.init_args.syn_chunk", str(syn_chunk)]
    args += ["--model.init_args.net.init_args.compile", str(compile).lower()]
    args += [
        "--model.init_args.grid_every",
        "0",
        "--model.init_args.export_dir",
        str(ROOT / "artifacts" / "bench_mhist"),
    ]
    cli = DDLightCLI(args=args, run=False)
    return cli.model, cli.datamodule, cli.config


def real_forward_share(net, dm, peak: float) -> dict:
    """Seconds of a no-grad forward of one real episode (2 x 128 images) and its share of the peak."""
    import torch

    from ddlight.ops.flops import count_macs

    dm.setup()
    x = dm.normalize(dm.train_images[: 2 * 128])
    macs = count_macs(net, tuple(x.shape[1:]))["macs"] * x.shape[0]
    with torch.inference_mode():
        net.embed(x)
        t0 = time.perf_counter()
        net.embed(x)
        dt = time.perf_counter() - t0
    return {
        "real_forward_s": dt,
        "real_forward_gflops": 2 * macs / dt / 1e9,
        "peak_share": 2 * macs / dt / 1e9 / peak,
    }


def run_ddlight(a: argparse.Namespace) -> dict:
    import lightning as L
    from distill_speed import peak_rss_gb

    model, dm, cfg = cli_parts(a.data_dir, a.micro_batch, a.channels_last, a.syn_chunk, a.compile)
    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            times.append(time.perf_counter() - self.t0)

    trainer = L.Trainer(
        max_steps=a.warmup + a.steps, precision=a.precision, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()], accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, dm)
    res = {"median_s": statistics.median(times[a.warmup :]), "peak_rss_gb": peak_rss_gb()}
    res["config_steps"] = int(cfg.trainer.max_steps)
    if a.precision == "32-true":
        res |= real_forward_share(model.net, dm, a.peak)
    return res


def run_reference(a: argparse.Namespace) -> dict:
    from bench_data import reference_convnet
    from distill_speed import peak_rss_gb, reference_loop

    from ddlight.data import MHISTDataModule

    dm = MHISTDataModule(data_dir=a.data_dir, image_size=224)
    dm.setup()
    make_net = lambda: reference_convnet(norm="batchnorm", width=32, depth=7, **dm.shape_args())  # noqa: E731
    times = reference_loop(dm, make_net, 50, 128, a.warmup + a.steps, "color_crop_cutout_flip_scale_rotate")
    return {"median_s": statistics.median(times[a.warmup :]), "peak_rss_gb": peak_rss_gb()}


def evaluation_projection(
    data_dir: str, micro_batch: int, channels_last: bool | str, epochs: int = 2
) -> dict:
    """Seconds per epoch of one evaluation run on 100 images (IPC 50 x 2), scaled to the config."""
    import torch

    from ddlight.cli import parse_config
    from ddlight.data import MHISTDataModule
    from ddlight.evaluation import Recipe, Runs
    from ddlight.models import ConvNet

    cfg = parse_config(["--config", str(EVAL_CONFIG), "--data.init_args.real.init_args.data_dir", data_dir])
    dm = MHISTDataModule(data_dir=data_dir, image_size=224)
    dm.setup()
    idx = torch.cat([torch.nonzero(dm.train_labels == c).flatten()[:50] for c in range(2)])
    net = ConvNet(width=32, depth=7, micro_batch=micro_batch, channels_last=channels_last, **dm.shape_args())
    res = Runs(net, Recipe(num_runs=1, epochs=epochs)).fit(
        dm.normalize(dm.train_images[idx]), dm.train_labels[idx], [], "mhist"
    )
    per_epoch = res["train_seconds_per_run"] / epochs
    runs, total_epochs = int(cfg.model.init_args.num_runs), int(cfg.model.init_args.epochs)
    return {"eval_s_per_epoch": per_epoch, "eval_projected_s": per_epoch * total_epochs * runs}


def spawn(extra: list[str]) -> dict:
    from distill_speed import spawn as spawn_worker

    return spawn_worker(extra, __file__)


def worker(a: argparse.Namespace) -> None:
    if a.mode == "reference":
        res = run_reference(a)
    elif a.mode == "eval":
        res = evaluation_projection(a.data_dir, a.micro_batch, a.channels_last)
    else:
        res = run_ddlight(a)
    print("RESULT " + json.dumps(res), flush=True)


def report(name: str, res: dict, ref: dict | None) -> None:
    ratio = f"{ref['median_s'] / res['median_s']:.2f}x" if ref else "-"
    line = f"{name:>34} {res['median_s']:>8.2f} {res['peak_rss_gb']:>8.2f} {ratio:>8}"
    if "peak_share" in res:
        line += (
            f"   real fwd {res['real_forward_gflops']:.1f} GFLOP/s = {100 * res['peak_share']:.0f} % of peak"
        )
    if "config_steps" in res:
        line += f"   config ({res['config_steps']} it) {res['median_s'] * res['config_steps'] / 3600:.2f} h"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT / "artifacts" / "mhist_generated"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--variants", nargs="+", default=["reference", *VARIANTS], choices=["reference", *VARIANTS]
    )
    ap.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto", help="auto: with bf16 units")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation projection")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="ddlight", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)
    ap.add_argument("--micro-batch", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", type=layout_arg, default=False, help=argparse.SUPPRESS)
    ap.add_argument("--syn-chunk", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--compile", type=layout_arg, default=False, help=argparse.SUPPRESS)
    ap.add_argument("--peak", type=float, default=0.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    from ddlight.data.mhist_layout import write_mhist_layout

    if not (Path(a.data_dir) / "annotations.csv").exists():
        t0 = time.perf_counter()
        write_mhist_layout(Path(a.data_dir))
        print(f"wrote the MHIST-shaped set to {a.data_dir} in {time.perf_counter() - t0:.0f} s")
    from bench_data import matmul_peak_gflops

    peak = matmul_peak_gflops()
    bf16 = a.bf16 == "yes" or (a.bf16 == "auto" and has_bf16_units())
    common = [
        "--data-dir",
        a.data_dir,
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--peak",
        str(peak),
    ]
    print(f"fp32 matmul peak (2048^2): {peak:.0f} GFLOP/s; bf16 units: {has_bf16_units()}; DataDAM "
          f"{CONFIG.relative_to(ROOT)}: median of {a.steps} iterations after {a.warmup} warm-up")  # fmt: skip
    print(f"{'variant':>34} {'s/iter':>8} {'RSS GB':>8} {'vs ref':>8}")
    ref = spawn(["--mode", "reference", *common]) if "reference" in a.variants else None
    if ref:
        report("reference-style fp32 (batch norm)", ref, None)
    run_variants(a, common, ref, bf16)


def run_variants(a: argparse.Namespace, common: list[str], ref: dict | None, bf16: bool) -> None:
    """ddlight's rows, each variant in its own subprocess, and its evaluation projection."""
    for name in (v for v in a.variants if v in VARIANTS):
        mb, cl, chunk, comp = VARIANTS[name]
        flags = ["--micro-batch", str(mb), "--syn-chunk", str(chunk), "--channels-last", str(cl).lower()]
        flags += ["--compile", str(comp).lower()]
        for precision in ("32-true", "bf16-mixed") if bf16 else ("32-true",):
            res = spawn([*common, *flags, "--precision", precision])
            label = f"ddlight {name} mb{mb}{LAYOUT[cl]}{f' chunk{chunk}' if chunk else ''} {precision}"
            label += " compiled" if comp else ""
            report(label, res, ref)
        if not a.no_eval:
            ev = spawn(["--mode", "eval", *common, *flags])
            where = EVAL_CONFIG.relative_to(ROOT)
            print(f"{'':>34} evaluation ({where}): {ev['eval_s_per_epoch']:.2f} s/epoch, "
                  f"projected {ev['eval_projected_s'] / 3600:.2f} h")  # fmt: skip


if __name__ == "__main__":
    main()
