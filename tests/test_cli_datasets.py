"""Every dataset through YAML alone: distil (configs/<dataset>/smoke.yaml) -> synthetic.pt -> evaluate
(configs/<dataset>/evaluate*.yaml), on generated files in each real layout; and the pairing refusals
(ZCA either way, a disguised dataset) that make a wrong evaluation impossible."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.data import SyntheticSet, SyntheticSetError
from tests.helpers import ROOT
from tests.helpers.cli_args import QUIET
from tests.helpers.datasets import (
    write_cifar,
    write_fashion_mnist,
    write_idx,
    write_image_folder,
    write_svhn,
    write_tiny_imagenet,
)

CONFIGS = ROOT / "configs"
SMALL_NET = ("--model.init_args.net.init_args.width", "8")

# dataset folder under configs/ -> (fixture writer, the data-location argument, its value relative to tmp)
DATASETS = {
    "fashionmnist": (write_fashion_mnist, "data_dir", "data"),
    "cifar10": (lambda r: write_cifar(r, 10), "data_dir", "data"),
    "cifar100": (lambda r: write_cifar(r, 100, per_class_train=1, per_class_test=1), "data_dir", "data"),
    "svhn": (write_svhn, "data_dir", "data"),
    "tinyimagenet": (write_tiny_imagenet, "data_dir", "data"),
    "imagefolder": (write_image_folder, "root", "data"),
}


def distil(dataset: str, tmp: Path, *extra: str) -> Path:
    _, key, rel = DATASETS[dataset]
    out = tmp / f"distil_{len(list(tmp.glob('distil_*')))}"
    DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / dataset / "smoke.yaml"),
            f"--data.init_args.{key}",
            str(tmp / rel),
            "--model.init_args.batch_real",
            "1",
            *SMALL_NET,
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(out),
            *QUIET,
            *extra,
        ]
    )
    return out / "synthetic.pt"


def evaluate(dataset: str, tmp: Path, path: Path, config: str = "evaluate.yaml", *extra: str) -> DDLightCLI:
    _, key, rel = DATASETS[dataset]
    return DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / dataset / config),
            "--data.init_args.path",
            str(path),
            f"--data.init_args.real.init_args.{key}",
            str(tmp / rel),
            "--model.init_args.num_runs",
            "1",
            "--model.init_args.epochs",
            "1",
            *SMALL_NET,
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(tmp / "eval"),
            *QUIET,
            *extra,
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_distil_export_evaluate_through_yaml(dataset, tmp_path):
    DATASETS[dataset][0](tmp_path / "data")
    path = distil(dataset, tmp_path)
    syn = SyntheticSet.load(path)
    cli = evaluate(dataset, tmp_path, path)
    real = cli.datamodule.real
    assert syn.dataset == real.identity()["dataset"] and syn.class_names == list(real.class_names)
    assert syn.num_classes == real.num_classes and syn.image_size == (real.im_size,) * 2
    assert syn.mean == tuple(real.mean) and syn.zca == {} and len(syn.test_sha256) == 64
    assert 0.0 <= cli.model.results["mean"] <= 1.0
    # The baseline stage on the same YAML: one flag swaps the method, the data section stays.
    _, key, rel = DATASETS[dataset]
    base = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / dataset / "smoke.yaml"),
            "--model",
            "ddlight.methods.Baseline",
            f"--data.init_args.{key}",
            str(tmp_path / rel),
            *SMALL_NET,
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path / "base"),
            *QUIET,
        ]
    )
    assert base.trainer.global_step == 1


@pytest.mark.slow
def test_zca_set_needs_a_zca_data_module_and_vice_versa(tmp_path):
    write_cifar(tmp_path / "data", 10)
    whitened = distil("cifar10", tmp_path, "--data.init_args.zca", "true", "--data.init_args.zca_reg", "0.2")
    syn = SyntheticSet.load(whitened)
    assert syn.zca["reg"] == 0.2 and len(syn.zca["fit_sha256"]) == 64
    cli = evaluate(
        "cifar10", tmp_path, whitened, "evaluate_zca.yaml", "--data.init_args.real.init_args.zca_reg", "0.2"
    )
    real = cli.datamodule.real
    x, _ = next(iter(real.test_dataloader()))  # the evaluator's test images are whitened
    assert torch.allclose(
        x,
        real.zca_transform(real.normalizer.__class__(real.mean_t, real.std_t)(real.test_images[: len(x)])),
        atol=1e-5,
    )
    with pytest.raises(SyntheticSetError, match=r"field 'zca' is reg=0.2 .* has off; a set distilled in ZCA"):
        evaluate("cifar10", tmp_path, whitened)
    with pytest.raises(SyntheticSetError, match=r"field 'zca' is reg=0.2 .* has reg=0.1 "):
        evaluate("cifar10", tmp_path, whitened, "evaluate_zca.yaml")
    plain = distil("cifar10", tmp_path)
    with pytest.raises(SyntheticSetError, match=r"field 'zca' is off but .* has reg=0.1"):
        evaluate("cifar10", tmp_path, plain, "evaluate_zca.yaml")


@pytest.mark.slow
def test_fashion_mnist_disguised_as_mnist_is_refused_against_real_mnist(tmp_path):
    """The issue's incident: Fashion-MNIST files placed as MNIST's, distilled as 'mnist', then evaluated
    on the real MNIST test set. Name, shape and mean/std agree; the test split's digest does not."""
    write_fashion_mnist(tmp_path / "fashion")
    disguised = tmp_path / "disguised" / "MNIST" / "raw"
    shutil.copytree(tmp_path / "fashion" / "FashionMNIST" / "raw", disguised)
    mnist = tmp_path / "mnist" / "MNIST" / "raw"  # a stand-in for the real MNIST: other images
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 20)):
        labels = (torch.arange(n) % 10).numpy()
        write_idx(
            mnist / f"{prefix}-images-idx3-ubyte", (torch.arange(n * 784) % 251).numpy().reshape(n, 28, 28)
        )
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels)
    args = ["fit", "--config", str(CONFIGS / "mnist" / "datadam.yaml"), "--model.init_args.batch_real", "1"]
    out = tmp_path / "out"
    DDLightCLI(
        args=[
            *args,
            "--data.init_args.data_dir",
            str(tmp_path / "disguised"),
            "--model.init_args.ipc",
            "1",
            *SMALL_NET,
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(out),
            *QUIET,
        ]
    )
    syn = SyntheticSet.load(out / "synthetic.pt")
    assert syn.dataset == "mnist"  # the name cannot tell
    with pytest.raises(
        SyntheticSetError, match=r"field 'test_sha256' .* the real test split's content differs"
    ):
        DDLightCLI(
            args=[
                "fit",
                "--config",
                str(CONFIGS / "mnist" / "evaluate.yaml"),
                "--data.init_args.path",
                str(out / "synthetic.pt"),
                "--data.init_args.real.init_args.data_dir",
                str(tmp_path / "mnist"),
                "--model.init_args.epochs",
                "1",
                "--model.init_args.num_runs",
                "1",
                *SMALL_NET,
                "--trainer.fast_dev_run",
                "1",
                "--trainer.default_root_dir",
                str(tmp_path / "e"),
                *QUIET,
            ]
        )


@pytest.mark.slow
def test_experts_and_pad_on_whitened_cifar10_then_evaluate(tmp_path):
    """PAD's full path on ZCA-whitened CIFAR-10 through its YAML files: experts -> PAD -> evaluate_zca."""
    write_cifar(tmp_path / "data", 10, per_class_train=3)
    data = ("--data.init_args.data_dir", str(tmp_path / "data"))
    buffer = ("--model.init_args.buffer_dir", str(tmp_path / "buffer"))
    DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "cifar10" / "experts.yaml"),
            *data,
            *buffer,
            *SMALL_NET,
            "--model.init_args.num_experts",
            "1",
            "--model.init_args.epochs",
            "2",
            "--model.init_args.scheduler",
            "false",
            "--data.init_args.batch_size",
            "10",
            "--trainer.default_root_dir",
            str(tmp_path / "exp"),
            *QUIET,
        ]
    )
    out = tmp_path / "pad"
    pad = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "cifar10" / "pad_ipc1.yaml"),
            *data,
            *buffer,
            *SMALL_NET,
            "--model.init_args.syn_steps",
            "2",
            "--model.init_args.expert_epochs",
            "1",
            "--model.init_args.max_start_epoch",
            "1",
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(out),
            *QUIET,
        ]
    )
    assert pad.datamodule.zca_transform is not None
    syn = SyntheticSet.load(out / "synthetic.pt")
    assert syn.method == "pad" and syn.zca["reg"] == 0.1 and syn.dataset == "cifar10"
    cli = evaluate("cifar10", tmp_path, out / "synthetic.pt", "evaluate_zca.yaml")
    assert 0.0 <= cli.model.results["mean"] <= 1.0
