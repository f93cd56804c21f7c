"""MTT: hard labels, random real images, a fixed start-epoch window, every parameter matched, no
threshold; the DATM/PAD switches are not part of its signature."""

import shutil

import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.data import SyntheticSet
from ddlight.methods import MTT
from tests.helpers import ROOT
from tests.helpers.builders import TinyDigits, tiny_net
from tests.helpers.cli_args import QUIET, TINY_DIGITS_NET
from tests.helpers.trajectory import exposed, fit, make_method, plan_of

CONFIGS = ROOT / "configs"


def test_cli_offers_only_mtts_knobs_with_mtts_defaults(tmp_path):
    args = exposed(MTT)
    for absent in ("soft_labels", "depth_ratio", "loss_threshold", "lr_label", "min_start_epoch"):
        assert absent not in args, absent
    # GeorgeCazenavette/mtt-distillation distill.py's defaults
    want = {"syn_steps": 20, "expert_epochs": 3, "max_start_epoch": 25, "lr_img": 1000.0, "lr_lr": 1e-5}
    assert {k: args[k] for k in want} == want and args["lr_teacher_init"] == 0.01 and args["momentum"] == 0.5
    with pytest.raises(TypeError, match="soft_labels"):
        MTT(tiny_net(), buffer_dir=str(tmp_path), soft_labels=True)


def test_random_real_images_hard_labels_and_a_fixed_window(buffer_dir, tmp_path):
    model = make_method(MTT, buffer_dir)
    fit(model, 0, tmp_path)
    assert model.label_logits is None and torch.equal(model.labels, torch.arange(4).repeat_interleave(2))
    dm = TinyDigits()
    dm.setup()
    real = (dm.train_images.float() / 255 - dm.mean[0]) / dm.std[0]
    for image, label in zip(model.images.detach(), model.labels, strict=True):
        match = (real - image).flatten(1).abs().amax(1) < 1e-6
        assert match.any() and bool((dm.train_labels[match] == label).all())
    assert bool(model.fiem.all()) and model.settings.loss_threshold is None
    assert {model.max_start_bound(s) for s in (0, 1, 10**6)} == {2}
    assert {plan_of(model, s).start_epoch for s in range(20)} == {0, 1}


def test_what_moves_and_what_stays(buffer_dir, tmp_path):
    model = make_method(MTT, buffer_dir, lr_lr=1e-2)
    fit(model, 0, tmp_path)
    images, lr = model.images.detach().clone(), model.syn_lr.detach().clone()
    labels, net = model.labels.clone(), {k: v.clone() for k, v in model.net.state_dict().items()}
    fit(model, 3, tmp_path)
    assert [g["name"] for g in model.optimizers().optimizer.param_groups] == ["images", "syn_lr"]
    assert not torch.equal(model.images, images) and not torch.equal(model.syn_lr.detach(), lr)
    assert torch.equal(model.labels, labels)  # hard labels are not learned
    for k, v in model.net.state_dict().items():  # the student's weights come from the buffer
        assert torch.equal(v, net[k]), k


def test_cli_run_records_the_fixed_settings_and_reloads(buffer_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(buffer_dir, tmp_path / "artifacts" / "experts_mnist")
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "mtt.yaml"),
            *TINY_DIGITS_NET,
            *("--model.init_args.ipc", "2", "--model.init_args.syn_steps", "2"),
            *("--model.init_args.expert_epochs", "1", "--model.init_args.export_dir", "out"),
            "--trainer.max_steps",
            "2",
            *QUIET,
        ],
    )
    syn = SyntheticSet.load(tmp_path / "out" / "synthetic.pt")
    assert syn.method == "mtt" and not syn.is_soft and syn.labels.dtype == torch.int64
    assert syn.config["model"]["soft_labels"] is False and syn.config["model"]["depth_ratio"] == 0.0
    # A checkpoint re-instantiates MTT from what was configured; the fixed settings follow.
    cli.trainer.save_checkpoint(tmp_path / "mtt.ckpt")
    again = MTT.load_from_checkpoint(tmp_path / "mtt.ckpt", weights_only=False)
    assert again.settings.soft_labels is False and torch.equal(again.images, cli.model.images)
