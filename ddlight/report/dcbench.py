"""DC-Bench (Cui et al., 2022, github.com/justincui03/dc_benchmark): its evaluation protocol, and an
exporter that writes a ddlight synthetic set in the file layout DC-Bench's loaders read.

Protocol, as DC-Bench's ``evaluator/evaluator.py`` and ``evaluator/evaluator_utils.py`` run it with
``--dsa`` (its leaderboard setting): ``num_eval`` = 5 networks, each trained from scratch on the synthetic
set for ``range(epoch_eval_train + 1)`` = 1001 epochs (``epoch_eval_train`` 300 without augmentation;
``--dsa`` or any ``--aug`` raises it to 1000) with SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch
256, the learning rate x0.1 after epoch ``Epoch // 2 + 1`` = 501 by a new SGD (the momentum restarts),
DSA ``color_crop_cutout_flip_scale_rotate`` with one op per batch (``aug_mode 'S'``, not Siamese) and
DSA's default magnitudes; ``convnet`` is ConvNet width 128, depth 3, ReLU, instance norm, average pooling;
accuracy is plain accuracy on the real test set, reported as mean and (population) std over the 5 runs.
``configs/mnist/evaluate_dcbench.yaml`` is that protocol on ddlight's
:class:`~ddlight.evaluation.SyntheticEvaluator`; :data:`PROTOCOL` below states it once more so a test can
hold the YAML to it.

The evaluator's ``schedule: reference`` with ``epochs: 1001`` is that loop, step for step
(``python -m benchmarks.parity dcbench``, ``tests/parity/test_dcbench.py``). Known differences:

* (Removed: ddlight trained 1000 epochs and decayed from epoch 500 with the momentum kept; the preset now
  runs ``schedule: reference``.)
* (Removed: DC-Bench's DSA flips MNIST too, and so does ``configs/mnist/evaluate_dcbench.yaml``, whose
  explicit strategy is applied as written; ddlight's default ``auto`` drops flip for digits, see
  :func:`ddlight.ops.augment.strategy_for`.)
* DC-Bench draws DSA parameters per sample from the global torch RNG; ddlight from its seeded generator.

Export layout (DC-Bench's ``data_loader/dc_data_loader.py``, the loader DC, DSA and DM share, and
``docs/new_method.md``)::

    distilled_results/<METHOD>/<DATASET>/IPC<ipc>/res_<METHOD>_<DATASET>_ConvNet_<ipc>ipc.pt
        torch.save({"data": [[images, labels]]}); the loader takes data[-1] = (images, labels)

``images`` are float32 ``(N, C, H, W)`` in the dataset's normalised space (DC-Bench evaluates with
``normalize_data`` on, and DC/DSA/DM store normalised images); ``labels`` are int64 class indices, or,
for soft-label sets (PAD), float32 class probabilities ``softmax(logits)`` per row: DC-Bench's
``nn.CrossEntropyLoss`` then computes exactly the soft cross-entropy ddlight trains with, and its
accuracy code argmaxes float labels. DC-Bench knows only CIFAR-10/100 and Tiny ImageNet and creates
3-channel networks, so MNIST/MHIST and a new method name must be registered there as its
``docs/new_dataset.md`` and ``docs/new_method.md`` describe; the export's ``README.md`` says how.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ddlight.data.synthetic import SyntheticSet
from ddlight.ops.augment import FIELD_STRATEGY
from ddlight.utils.io import atomic_torch_save, atomic_write

# DC-Bench's evaluation protocol with --dsa, in the SyntheticEvaluator's and data module's terms.
PROTOCOL: dict[str, Any] = {
    "num_runs": 5,  # --num_eval 5
    "epochs": 1001,  # range(epoch_eval_train + 1); epoch_eval_train 1000 whenever --dsa (or --aug)
    "lr": 0.01,  # --lr_net
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "schedule": "reference",  # lr *= 0.1 after epoch 501 by a new SGD (momentum restarts)
    "dsa": True,
    "dsa_strategy": FIELD_STRATEGY,  # --dsa_strategy default
    "batch_size": 256,  # --batch_train
    "net": {"width": 128, "depth": 3, "norm": "instancenorm", "act": "relu", "pooling": "avgpooling"},
}

# DC-Bench's dataset names (its `--dataset` values and the directory level that uses them).
DATASET_NAMES = {"mnist": "MNIST", "mhist": "MHIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset.lower(), dataset)


def data_file_name(method: str, dataset: str, ipc: int) -> str:
    """DC-Bench's ``get_data_file_name`` for the DC/DSA/DM loaders (non-Tiny-ImageNet datasets)."""
    return f"res_{method.upper()}_{dataset}_ConvNet_{ipc}ipc.pt"


def export_path(root: str | Path, method: str, dataset: str, ipc: int) -> Path:
    """Where DC-Bench's loader looks: ``root/<METHOD>/<DATASET>/IPC<ipc>/<data file>``."""
    method, dataset = method.upper(), dataset_name(dataset)
    return Path(root) / method / dataset / f"IPC{ipc}" / data_file_name(method, dataset, ipc)


def dcbench_labels(syn: SyntheticSet) -> torch.Tensor:
    """int64 indices for hard labels; per-row probabilities for soft (logit) labels."""
    if syn.is_soft:
        return torch.softmax(syn.labels.float(), dim=1).contiguous()
    return syn.labels.long().contiguous()


def export(syn: SyntheticSet, root: str | Path, method: str | None = None) -> Path:
    """Write ``syn`` under ``root`` in DC-Bench's layout (atomically) plus a README; return the data file."""
    method = (method or syn.method).upper()
    path = export_path(root, method, syn.dataset, syn.ipc)
    payload = {
        "data": [[syn.images.detach().cpu().float().contiguous(), dcbench_labels(syn)]],
        # Ignored by DC-Bench's loader; kept so the file says what it is.
        "ddlight": {
            "method": syn.method,
            "dataset": syn.dataset,
            "ipc": syn.ipc,
            "mean": list(syn.mean),
            "std": list(syn.std),
            "soft_labels_as": "softmax probabilities" if syn.is_soft else "class indices",
        },
    }
    atomic_torch_save(payload, path)
    readme = _readme(method, dataset_name(syn.dataset), syn)
    atomic_write(Path(root) / "README.md", lambda fh: fh.write(readme.encode()))
    return path


def _readme(method: str, dataset: str, syn: SyntheticSet) -> str:
    lower = method.lower()
    return f"""# ddlight export in DC-Bench's layout

`{method}/{dataset}/IPC{syn.ipc}/{data_file_name(method, dataset, syn.ipc)}` holds `{{"data": [[images,
labels]]}}` as DC-Bench's DC/DSA/DM loaders read it (`data[-1]`): images float32
{tuple(syn.images.shape)}, normalised with mean {list(syn.mean)} / std {list(syn.std)};
labels {"float32 softmax probabilities (soft labels)" if syn.is_soft else "int64 class indices"}.

To evaluate it with DC-Bench (github.com/justincui03/dc_benchmark):

1. copy `{method}/` into `dc_benchmark/distilled_results/`;
2. in `evaluator/evaluator_utils.py`, `get_data_loader`: `elif method == '{lower}': return
   {method.title()}Loader()`, with a loader identical to `DCDataLoader` but reading the `"{method}"`
   directory, and in `get_data_file_name`: `elif method == '{lower}': return
   'res_%s_%s_ConvNet_%dipc.pt' % (method.upper(), dataset, ipc)` (DC-Bench `docs/new_method.md`);
3. {dataset} is not among DC-Bench's datasets: add it to `get_dataset` (torchvision's loader with the
   mean/std above) and to `networks/network_utils.py` (channel {syn.channels}, im_size
   {syn.image_size}, num_classes {syn.num_classes}) as DC-Bench `docs/new_dataset.md` describes;
4. `python evaluator/evaluator.py --method {lower} --dataset {dataset} --ipc {syn.ipc} --model convnet --dsa`.
"""


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m ddlight.report.dcbench SYNTHETIC.pt OUT_DIR [--method NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m ddlight.report.dcbench",
        description="Export a ddlight synthetic.pt in DC-Bench's distilled_results layout.",
    )
    parser.add_argument("synthetic", help="a synthetic.pt written by a ddlight distiller")
    parser.add_argument("out_dir", help="becomes DC-Bench's distilled_results/ directory")
    parser.add_argument("--method", default=None, help="method directory name (default: the set's method)")
    args = parser.parse_args(None if argv is None else list(argv))
    path = export(SyntheticSet.load(args.synthetic), args.out_dir, args.method)
    print(f"[ddlight] DC-Bench export written to {path}")
    return path


if __name__ == "__main__":
    main()
