"""Equal-budget accuracy: the authors' script and ddlight distil the same MNIST IPC 10 configuration from
real images for the same number of iterations (DM, DataDAM: image updates; DC, DSA: networks, ten image
updates each at IPC 10; ``--iterations``), and ddlight's evaluator scores both sets.

The authors' script runs from a patched copy in ``--work`` (outside this repository): the only changes are
``view`` -> ``reshape`` where today's torch refuses ``view`` on a CPU batch (same values), the device
(DataDAM's ``get_network`` calls ``net.cuda()`` unconditionally; DC's code already picks the CPU when no
GPU is present) and one timing print per iteration. Its saved set
is re-wrapped as a ddlight ``synthetic.pt`` (images and labels replaced in the ddlight run's file: the
same normalisation, mean 0.1307 / std 0.3081, and the same real-data identity).

    python -m benchmarks.parity.budget dm --stage official --official PATH --work /tmp/eb
    python -m benchmarks.parity.budget dm --stage ddlight --work /tmp/eb
    python -m benchmarks.parity.budget dm --stage evaluate --side official --work /tmp/eb  (and ddlight)

``--shared-start`` on stage ``ddlight`` starts ddlight from the authors' initial set (their iteration-0
grid, converted exactly; ``model.init_args.init_from``), so the two runs differ only in the
implementation: without it each side draws its own real images, and at a few hundred updates that draw
decides most of the accuracy (docs/parity.md, DC). DataDAM's script writes no iteration-0 grid:
``--start PATH`` (a ``synthetic.pt``) starts both of its sides from a given set, the authors' through their
own ``--init smart`` (which reads ``./IPC10_images.pt`` and ``./IPC10_labels.pt`` on MNIST IPC 10),
ddlight's through ``init_from``. ``--data`` names the MNIST root, ``--device cuda`` evaluates on a GPU.

``datadam`` the same, with ``--pythonpath`` naming where ``kornia`` is installed (their ``utils.py``
imports it). Stages: ``official`` and ``ddlight`` distil (run them side by side with
``OMP_NUM_THREADS=1`` each, for equal conditions); ``evaluate --side`` scores one set with
``configs/mnist/evaluate.yaml``'s evaluator (5 x ConvNet-3 x 300 epochs) and writes ``eval.json`` beside
it. Seconds per iteration: the authors' from the timing print (mean over iterations 1.., iteration 0
saves an image grid; DataDAM's last also holds its evaluation and save), ddlight's from the set's
``distill_seconds`` (time inside training steps) over its iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from benchmarks import official_speed
from ddlight.data.synthetic import SyntheticSet

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("/work/shared/data") if Path("/work/shared/data").is_dir() else (ROOT / ".." / "shared" / "data")


# method -> the authors' script, its arguments, its result file, ddlight's configs
SETUPS = {
    # main_DM.py saves after the update of iteration ``Iteration`` (Iteration + 1 updates): N - 1 gives N.
    # Evaluation off (--num_eval 0): DM saves its set regardless.
    "dm": dict(
        script="main_DM.py",
        official_args=lambda n: ["--Iteration", str(n - 1), "--batch_real", "64", "--num_eval", "0"],
        result="res_DM_MNIST_ConvNet_10ipc.pt",
        configs=("configs/mnist/dm.yaml", "configs/overlays/dsa_keep_flip.yaml"),
    ),
    # main_DataDAM.py evaluates (and only then saves) at the top of an iteration in eval_it_pool; an
    # eval_mode other than S/SS makes that pool [Iteration], i.e. after Iteration updates. One evaluation
    # network trained one epoch (--num_eval 1 --epoch_eval_train 0) is the cheapest evaluation that
    # still saves; its accuracy is not used.
    "datadam": dict(
        script="main_DataDAM.py",
        official_args=lambda n: [
            "--Iteration",
            str(n),
            "--batch_real",
            "64",
            "--num_eval",
            "1",
            "--epoch_eval_train",
            "0",
            "--eval_mode",
            "none",
            "--lr_img",
            "1",
        ],
        result="res_DataDAM_MNIST_ConvNet_10ipc_.pt",
        configs=("configs/mnist/datadam_reference_code.yaml",),
    ),
    # main.py runs ``range(Iteration + 1)`` networks, each with outer_loop = 10 image updates at IPC 10, and
    # saves after the last: N networks is --Iteration N - 1 there and 10 N Lightning steps here. The
    # released DC initialises from noise; the comparison starts both sides from real images.
    "dc": dict(
        script="main.py",
        official_args=lambda n: ["--Iteration", str(n - 1), "--num_eval", "0", "--method", "DC"],
        result="res_DC_MNIST_ConvNet_10ipc.pt",
        configs=("configs/mnist/dc_ipc10.yaml",),
        ddlight_args=["--model.init_args.init", "real"],
        updates_per_iteration=10,
    ),
    "dsa": dict(
        script="main.py",
        official_args=lambda n: [
            "--Iteration",
            str(n - 1),
            "--num_eval",
            "0",
            "--method",
            "DSA",
            "--dsa_strategy",
            "color_crop_cutout_flip_scale_rotate",
        ],
        result="res_DSA_MNIST_ConvNet_10ipc.pt",
        configs=("configs/mnist/dsa_ipc10.yaml",),
        updates_per_iteration=10,
    ),
}


def patched_copy(official: Path, into: Path, script: str) -> None:
    """:func:`benchmarks.official_speed.patched_copy` (timing print, ``view`` -> ``reshape``) for
    ``script``, plus the device where a script needs it."""
    into.mkdir(parents=True, exist_ok=True)
    official_speed.patched_copy(official, into, scripts=(script,))
    # The device: DataDAM's get_network ends in an unconditional ``net.cuda()`` (utils.py:355).
    utils = (into / "utils.py").read_text()
    device = "'cuda' if torch.cuda.is_available() else 'cpu'"
    (into / "utils.py").write_text(utils.replace("net = net.cuda()", f"net = net.to({device})"))


def run_official(
    method: str,
    official: Path,
    work: Path,
    iterations: int,
    pythonpath: str,
    data: Path = DATA,
    start: Path | None = None,
) -> None:
    s = SETUPS[method]
    wd = work / f"{method}_official"
    patched_copy(official, wd, s["script"])
    init = "real"
    if start is not None:  # DataDAM's own "smart" init reads ./IPC10_{images,labels}.pt (MNIST) from its cwd
        if method != "datadam":
            raise ValueError(
                "--start on stage official: DataDAM only (the others' start is --shared-start's)"
            )
        syn = SyntheticSet.load(start)
        torch.save(syn.images.float().clone(), wd / "IPC10_images.pt")
        torch.save(syn.hard_labels.clone(), wd / "IPC10_labels.pt")
        init = "smart"
    args = [
        sys.executable,
        s["script"],
        "--dataset",
        "MNIST",
        "--ipc",
        "10",
        "--num_exp",
        "1",
        "--init",
        init,
    ]
    args += ["--data_path", str(data), "--save_path", str(wd / "result"), *s["official_args"](iterations)]
    env = {**os.environ, "PYTHONPATH": pythonpath}
    with open(wd / "log.txt", "w") as log:
        subprocess.run(args, cwd=wd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
    times = [float(t) for t in re.findall(r"ITER_TIME \d+ ([\d.]+)", (wd / "log.txt").read_text())]
    data = torch.load(wd / "result" / s["result"], map_location="cpu", weights_only=False)["data"]
    images, labels = data[-1]
    (wd / "official.json").write_text(
        json.dumps(
            {
                "updates": iterations,
                # iteration 0 also saves a grid: left out when there are others
                "s_per_it": statistics.mean(times[1 : -1 if method == "datadam" else None] or times),
                "cmd": args,
            }
        )
    )
    torch.save({"images": images, "labels": labels}, wd / "images.pt")


def official_start(method: str, work: Path, timeout_s: float = 3600.0, data: Path = DATA) -> Path:
    """The authors' initial set as a ddlight ``synthetic.pt``, for ``init_from``: their iteration-0 grid
    (``save_image`` of the de-normalised set, ``nrow`` = ipc, padding 2, written before the first update),
    waited for while their run starts. Real MNIST pixels are k/255 and survive the 8-bit PNG exactly, so
    this is their real-image start, not an approximation (it is not for a noise start)."""
    from torchvision.io import read_image

    from ddlight.data import MNISTDataModule
    from ddlight.data.base import dataset_name

    result = work / f"{method}_official" / "result"
    deadline = time.monotonic() + timeout_s
    while not (pngs := sorted(result.glob("vis_*_iter0.png"))):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no iteration-0 grid in {result} after {timeout_s:.0f} s (stage official running?)"
            )
        time.sleep(5)
    time.sleep(2)  # the file is written in one call; let it land
    ipc, k, side, pad = 10, 10, 28, 2
    grid = read_image(str(pngs[0]))[0].float() / 255
    cells = [
        grid[pad + r * (side + pad) : pad + r * (side + pad) + side, pad + c * (side + pad) :][:, :side]
        for r in range(k)
        for c in range(ipc)
    ]
    dm = MNISTDataModule(data_dir=str(data))
    images = ((torch.stack(cells) - dm.mean[0]) / dm.std[0]).unsqueeze(1)
    syn = SyntheticSet(
        images=images,
        labels=torch.arange(k).repeat_interleave(ipc),
        mean=dm.mean,
        std=dm.std,
        num_classes=k,
        method=f"{method}_official_start",
        dataset=dataset_name(dm),
        ipc=ipc,
    )
    return syn.save(work / f"{method}_official" / "start.pt")


def run_ddlight(
    method: str,
    work: Path,
    iterations: int,
    shared_start: bool = False,
    data: Path = DATA,
    start: Path | None = None,
) -> None:
    s = SETUPS[method]
    wd = work / f"{method}_ddlight"
    args = [sys.executable, "-m", "ddlight", "fit"]
    for c in s["configs"]:
        args += ["--config", str(ROOT / c)]
    args += [
        "--trainer.max_steps",
        str(iterations * s.get("updates_per_iteration", 1)),
        "--trainer.logger.init_args.save_dir",
        str(wd / "logs"),
        "--model.init_args.export_dir",
        str(wd),
        "--data.init_args.data_dir",
        str(data),
        *s.get("ddlight_args", []),
    ]
    if (
        shared_start or start is not None
    ):  # after the configs: the model's class is known before its init_args
        args += ["--model.init_args.init_from", str(start or official_start(method, work, data=data))]
    with open(wd.with_suffix(".log"), "w") as log:
        wd.mkdir(parents=True, exist_ok=True)
        subprocess.run(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    write_ddlight_timing(method, work, iterations, args)


def write_ddlight_timing(method: str, work: Path, iterations: int, cmd: list[str]) -> None:
    """ddlight's seconds per iteration: the set's ``distill_seconds`` (time inside training steps, kept
    across resumes) over its updates; unlike TensorBoard wall times it needs no logged step, which a
    40-step run of a config logging every 50 does not have."""

    wd = work / f"{method}_ddlight"
    seconds = float(SyntheticSet.load(wd / "synthetic.pt").extra["distill_seconds"])
    s_per_it = seconds / iterations if iterations else None  # 0 iterations: the start alone, exported
    (wd / "ddlight.json").write_text(json.dumps({"updates": iterations, "s_per_it": s_per_it, "cmd": cmd}))


def wrap_official(method: str, work: Path) -> Path:
    """The authors' images and labels in the ddlight run's ``synthetic.pt`` (same normalisation and
    real-data identity), written beside their run."""

    theirs = torch.load(work / f"{method}_official" / "images.pt")
    wrapped = SyntheticSet.load(work / f"{method}_ddlight" / "synthetic.pt")
    if not torch.equal(wrapped.hard_labels, theirs["labels"]):
        raise ValueError("label layouts differ")
    wrapped.images, wrapped.method = theirs["images"].float(), f"{method}_official"
    return wrapped.save(work / f"{method}_official" / "synthetic.pt")


def score(
    path: Path,
    out: Path,
    epochs: int | None = None,
    data: Path = DATA,
    device: str = "cpu",
    lr: float | None = None,
) -> dict:
    """``configs/mnist/evaluate.yaml``'s evaluator (5 x ConvNet-3 x 300 epochs) on the set at ``path``
    through ``ddlight.evaluation.Runs``: the same training as the CLI's without a Trainer's per-epoch
    bookkeeping, which dominates a 100-image epoch. ``device``: where the networks train; ``lr`` replaces
    the recipe's rate (a trajectory set's learned ``syn_lr``); the result is written to ``out``."""
    from ddlight.data import MNISTDataModule
    from ddlight.evaluation import Recipe, Runs
    from ddlight.models import ConvNet
    from ddlight.utils.io import atomic_json_dump

    syn = SyntheticSet.load(path)
    cfg = yaml.safe_load((ROOT / "configs/mnist/evaluate.yaml").read_text())["model"]["init_args"]
    cfg = {k: v for k, v in cfg.items() if k in Recipe.fields()}
    if epochs is not None:  # a shorter evaluation where the host cannot afford the protocol's 300
        cfg["epochs"] = epochs
    if lr is not None:
        cfg["lr"] = lr
    dm = MNISTDataModule(data_dir=str(data))
    dm.setup("test")
    runs = Runs(ConvNet(), Recipe(**cfg)).to(device)
    res = runs.fit(syn.images.to(device), syn.labels.to(device), dm.test_dataloader(), syn.dataset)
    res["device"] = device
    res["set"] = str(path)
    atomic_json_dump(res, out, sort_keys=False)
    return res


def evaluate(
    method: str, work: Path, side: str, epochs: int | None = None, data: Path = DATA, device: str = "cpu"
) -> None:
    """:func:`score` for one side's set, written beside it."""
    path = {
        "official": lambda: wrap_official(method, work),
        "ddlight": lambda: work / f"{method}_ddlight" / "synthetic.pt",
        "start": lambda: work / f"{method}_official" / "start.pt",  # the shared start itself
    }[side]()
    name = f"eval{'_start' if side == 'start' else ''}{'' if epochs is None else f'_{epochs}ep'}.json"
    res = score(path, path.parent / name, epochs, data, device)
    print(f"{method} {side}: {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % ({res['accuracies']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.parity.budget", description=__doc__)
    ap.add_argument("method", choices=sorted(SETUPS))
    ap.add_argument("--official", type=Path, help="the authors' checkout (stage official)")
    ap.add_argument("--work", type=Path, required=True, help="a folder outside the repository")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--stage", choices=("official", "ddlight", "evaluate"), required=True)
    ap.add_argument(
        "--side",
        choices=("official", "ddlight", "start"),
        help="stage evaluate: which set (start: the authors' initial set, --shared-start's)",
    )
    ap.add_argument("--epochs", type=int, help="stage evaluate: epochs instead of evaluate.yaml's 300")
    ap.add_argument("--data", type=Path, default=DATA, help="root holding MNIST/raw (both sides)")
    ap.add_argument("--device", default="cpu", help="stage evaluate: where the networks train")
    ap.add_argument("--pythonpath", default="", help="PYTHONPATH of the authors' script (e.g. kornia)")
    ap.add_argument(
        "--shared-start",
        action="store_true",
        help="stage ddlight: start from the authors' initial set (their iteration-0 grid; dc, dsa, dm)",
    )
    ap.add_argument(
        "--start",
        type=Path,
        help="stages official (datadam: its 'smart' init) and ddlight: both start from this synthetic.pt",
    )
    a = ap.parse_args(argv)
    if a.stage == "official":
        run_official(a.method, a.official, a.work, a.iterations, a.pythonpath, a.data, a.start)
    elif a.stage == "ddlight":
        run_ddlight(a.method, a.work, a.iterations, a.shared_start, a.data, a.start)
    else:
        evaluate(a.method, a.work, a.side, a.epochs, a.data, a.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
