"""Seconds per iteration of the official DC / DSA / DM code (VICO-UoE/DatasetCondensation) on this CPU, next
to ddlight's same method at the same settings, in one command.

The official scripts run on a CPU as they are (``args.device = 'cuda' if available else 'cpu'``); this
copies ``main.py`` / ``main_DM.py`` / ``utils.py`` / ``networks.py`` from a checkout into a temporary folder
and inserts one timing line per iteration; the one other change is ``view`` -> ``reshape`` where today's
torch refuses the official ``out.view(out.size(0), -1)`` on a CPU batch (same values). Both sides:
MNIST IPC 10 from real images, ConvNet-3 w128 instance norm, the official DSA strategy (flip on: ddlight
runs with ``configs/overlays/dsa_keep_flip.yaml``), batch_real 256, evaluation off (``--num_eval 0``).
An official DC/DSA iteration is ``outer_loop`` image updates with their inner loops: ddlight's figure
for it is ``outer_loop`` steps. Each row also prints one official iteration's FLOPs, counted on ddlight's
side by ``torch.utils.flop_counter`` (both sides run the same convolutions and matmuls), and each side's
share of the fp32 matmul peak measured at the start of the command.

    python benchmarks/official_speed.py --official /path/to/DatasetCondensation [--methods dm dsa dc]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
SCRIPTS = {"dm": "main_DM.py", "dc": "main.py", "dsa": "main.py"}
CONFIGS = {m: f"configs/mnist/{m}_ipc10.yaml" for m in ("dm", "dc", "dsa")}
# --cpu-sized: ddlight's CPU configs, and the official scripts at the same sizes (their ConvNetW32 is
# ddlight's ConvNet width 32)
CPU_CONFIGS = {m: f"configs/mnist/{m}.yaml" for m in ("dm", "dc", "dsa")}
CPU_OFFICIAL = {"dm": ["--batch_real", "64"], "dc": ["--model", "ConvNetW32", "--batch_real", "32"]}
CPU_OFFICIAL["dsa"] = CPU_OFFICIAL["dc"]
OUTER_LOOP = {"dm": 1, "dc": 10, "dsa": 10}  # image updates per official iteration (get_loops(10))
TIMING = "print('ITER_TIME %d %.4f' % (it, time.time() - _t_it), flush=True)  # ddlight timing patch"


def patched_copy(official: Path, into: Path, scripts: tuple[str, ...] = ("main.py", "main_DM.py")) -> None:
    for name in (*scripts, "utils.py", "networks.py"):
        shutil.copy(official / name, into / name)
    for name in scripts:
        text = (into / name).read_text()
        text, n = re.subn(
            r"(\n(\s+)for it in range\(args\.Iteration\+1\):\n)", r"\1\2    _t_it = time.time()\n", text
        )
        # the end of an iteration: DM after its single image update, DC/DSA after the per-iteration print
        anchor = r"(\n(\s+)loss_avg /= \([^\n]*\)\n)"
        text, m = re.subn(anchor, lambda g: g.group(1) + g.group(2) + TIMING + "\n", text, count=1)
        if n != 1 or m != 1:
            raise RuntimeError(f"{name}: the timing patch did not apply (the official code changed?)")
        (into / name).write_text(text)
    # With today's torch a DSA-augmented CPU batch reaches ConvNet.embed non-contiguous, where the
    # official ``out.view(out.size(0), -1)`` raises; ``reshape`` is the same values (a compatibility fix).
    nets = (into / "networks.py").read_text()
    (into / "networks.py").write_text(
        nets.replace("out.view(out.size(0), -1)", "out.reshape(out.size(0), -1)")
    )


def official(
    method: str, workdir: Path, iterations: int, extra: list[str], env: dict[str, str]
) -> list[float]:
    args = [sys.executable, SCRIPTS[method], "--dataset", "MNIST", "--ipc", "10", "--num_exp", "1"]
    args += ["--num_eval", "0", "--Iteration", str(iterations), "--data_path", str(DATA), "--init", "real"]
    args += ["--save_path", str(workdir / "result"), *extra]
    if method == "dsa":
        args += ["--method", "DSA", "--dsa_strategy", "color_crop_cutout_flip_scale_rotate"]
    elif method == "dc":
        args += ["--method", "DC"]
    out = subprocess.run(args, cwd=workdir, capture_output=True, text=True, env=env)
    times = [float(m.group(2)) for m in re.finditer(r"ITER_TIME (\d+) ([\d.]+)", out.stdout)]
    if not times:
        raise RuntimeError(
            f"official {method} printed no timings:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return times[1:]  # iteration 0 also saves the image grid


def ours(
    method: str, steps: int, config: str, flop_steps: int, env: dict[str, str]
) -> tuple[list[float], float]:
    # DC runs without augmentation on both sides; DSA and DM with the official strategy (flip kept)
    overlay = [] if method == "dc" else ["--config", "configs/overlays/dsa_keep_flip.yaml"]
    code = f"""
import time, lightning as L
from ddlight.cli import DDLightCLI
cli = DDLightCLI(args=["--config", "{config}", *{overlay!r},
    "--trainer.logger", "false", "--model.init_args.grid_every", "0",
    "--model.init_args.export_dir", "artifacts/bench_official_{method}"], run=False)
times = []
class T(L.Callback):
    def on_train_batch_start(self, *a): self.t = time.perf_counter()
    def on_train_batch_end(self, *a): times.append(time.perf_counter() - self.t)
L.Trainer(max_steps={steps}, logger=False, enable_checkpointing=False, enable_progress_bar=False,
          enable_model_summary=False, callbacks=[T()], accelerator="cpu").fit(cli.model, cli.datamodule)
print("TIMES", *times)
# the FLOPs of one official iteration ({flop_steps} steps from a fresh trainer), counted, not timed
from torch.utils.flop_counter import FlopCounterMode
counter = FlopCounterMode(display=False)
with counter:
    L.Trainer(max_steps={flop_steps}, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(cli.model, cli.datamodule)
print("GFLOP", counter.get_total_flops() / 1e9)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    found = {
        ln.split()[0]: ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith(("TIMES", "GFLOP"))
    }
    if "GFLOP" not in found:
        raise RuntimeError(f"ddlight {method} failed:\n{out.stderr[-3000:]}")
    return [float(t) for t in found["TIMES"]], float(found["GFLOP"][0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of VICO-UoE/DatasetCondensation")
    ap.add_argument("--methods", nargs="+", default=["dm", "dsa", "dc"], choices=list(SCRIPTS))
    ap.add_argument("--iterations", type=int, default=6, help="official iterations (the first is dropped)")
    ap.add_argument("--cpu-sized", action="store_true", help="ddlight's CPU configs (DC/DSA width 32)")
    from bench_data import add_heap_option, heap_environment, matmul_peak_gflops  # siblings, run as a script

    add_heap_option(ap)
    a = ap.parse_args()
    policy, env = heap_environment(a.mmap_threshold)
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    sizes = "CPU-sized (DM 64/class; DC/DSA width 32, 32/class)" if a.cpu_sized else "w128, batch_real 256"
    peak = matmul_peak_gflops()
    print(
        f"MNIST IPC 10, real init, ConvNet-3 {sizes}; threads {threads}; fp32 matmul peak {peak:.0f} GFLOP/s;"
        f" glibc heap: {policy} (both sides, set through glibc's variables)"
    )
    print(
        f"{'method':>6} {'official s/iter':>16} {'ddlight s/iter':>15} {'speed-up':>9} {'GFLOP/iter':>11}"
        f" {'official % of peak':>19} {'ddlight % of peak':>18}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        patched_copy(a.official, Path(tmp))
        for method in a.methods:
            t0 = time.perf_counter()
            extra = CPU_OFFICIAL[method] if a.cpu_sized else []
            ref = statistics.median(official(method, Path(tmp), a.iterations, extra, env))
            k = OUTER_LOOP[method]
            config = (CPU_CONFIGS if a.cpu_sized else CONFIGS)[method]
            steps, gflop = ours(method, k * a.iterations, config, k, env)
            mine = statistics.median([sum(steps[i : i + k]) for i in range(k, len(steps) - k + 1, k)])
            wall = time.perf_counter() - t0
            shares = f"{100 * gflop / ref / peak:>18.0f}% {100 * gflop / mine / peak:>17.0f}%"
            line = f"{method:>6} {ref:>16.3f} {mine:>15.3f} {ref / mine:>8.2f}x {gflop:>11.1f} {shares}"
            print(f"{line}   ({wall:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
