import os

import lightning as L
import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.methods import DataDAM
from ddlight.models import ConvNet
from ddlight.models.init import reinitialize
from ddlight.ops.attention import abs_pow, class_means, mean_matching_loss, spatial_attention
from ddlight.ops.augment import DSA
from tests.helpers import ROOT
from tests.helpers.builders import bundled_set, small_model
from tests.helpers.cli_args import QUIET, TINY_DATADAM

CONFIGS = ROOT / "configs"


def test_spatial_attention_by_hand():
    f = torch.tensor([[[[1.0, -2.0], [0.0, 1.0]], [[1.0, 0.0], [-1.0, 1.0]]]])  # (1, 2, 2, 2)
    a1 = spatial_attention(f, power=1)
    raw1 = torch.tensor([2.0, 2.0, 1.0, 2.0])
    torch.testing.assert_close(a1, (raw1 / raw1.norm()).view(1, 4))
    a4 = spatial_attention(f, power=4)
    raw4 = torch.tensor([2.0, 16.0, 1.0, 2.0])
    torch.testing.assert_close(a4, (raw4 / raw4.norm()).view(1, 4))


@pytest.mark.parametrize("power", [1, 2, 3, 4, 5, 2.5])
def test_abs_pow_matches_pow_with_its_gradient(power):
    """The repeated-squaring path is |x|^p within float rounding, forward and backward."""
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    got = abs_pow(x, power)
    want = x.abs().pow(power)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad((got * w).sum(), x)
    (g_want,) = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_got, g_want)


def test_class_mean_loss_by_hand():
    real = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])  # classes 0,0,1,1
    syn = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # one per class
    means = class_means(real, 2)
    torch.testing.assert_close(means, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    # class 0: (2-1)^2 + (0-1)^2 = 2 ; class 1: 0 + 9 = 9
    assert float(mean_matching_loss(means, syn, 2)) == pytest.approx(11.0)


def test_loss_decreases_on_real_mnist(mnist_root, tmp_path):
    dm = MNISTDataModule(data_dir=str(mnist_root), episode_per_class=8)
    model = small_model(lr_img=100.0, export_dir=str(tmp_path))
    trainer = L.Trainer(
        max_steps=15,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    seen, first_net = [], {}

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
            if not first_net:
                first_net.update({k: v.clone() for k, v in pl_module.net.state_dict().items()})

    trainer.callbacks.append(Track())
    trainer.fit(model, dm)
    assert len(seen) == 15
    assert sum(seen[-3:]) / 3 < 0.8 * sum(seen[:3]) / 3, seen
    # one network for all 15 steps (steps_per_network=100): its weights never trained
    assert all(torch.equal(first_net[k], v) for k, v in model.net.state_dict().items())
    # the set exported itself and loads back
    syn = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert syn.method == "datadam" and syn.ipc == 2 and syn.iteration == 15
    assert torch.equal(syn.labels, torch.arange(10).repeat_interleave(2))
    assert (tmp_path / "grid.png").exists()


def test_images_move_labels_fixed_and_new_network_each_block(tmp_path):
    dm = MNISTDataModule(source="bundled", episode_per_class=8)
    model = small_model(steps_per_network=1, lr_img=1.0, export_dir=str(tmp_path))
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    nets = []

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            nets.append(pl_module.net.blocks[0][0].weight.detach().clone())

    trainer.callbacks.append(Track())
    trainer.fit(model, dm)
    init = model.initial_images(dm)
    assert not torch.allclose(model.images.detach(), init)
    assert torch.equal(model.labels, torch.arange(10).repeat_interleave(2))
    assert not torch.equal(nets[0], nets[1]) and not torch.equal(nets[1], nets[2])


def test_real_noise_and_kcenter_init():
    dm = MNISTDataModule(source="bundled")
    dm.setup()
    labels2 = torch.arange(10).repeat_interleave(2)
    imgs = small_model(init="real").initial_images(dm)
    assert imgs.shape == (20, 1, 28, 28)
    flat_train = (dm.train_images.float() / 255 - 0.1307) / 0.3081
    # every initial image is one of the real training images of its class
    d = torch.cdist(imgs.flatten(1), flat_train.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    nearest = d.argmin(1)
    assert torch.allclose(d.min(1).values, torch.zeros(20), atol=1e-3)
    assert torch.equal(dm.train_labels[nearest], labels2)
    n = small_model(init="noise").initial_images(dm)
    assert abs(float(n.mean())) < 0.1 and abs(float(n.std()) - 1) < 0.1
    k = small_model(init="kcenter", ipc=3).initial_images(dm)
    d = torch.cdist(k.flatten(1), flat_train.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(d.min(1).values, torch.zeros(30), atol=1e-3)
    assert torch.equal(dm.train_labels[d.argmin(1)], torch.arange(10).repeat_interleave(3))
    assert len(set(d.argmin(1).tolist())) == 30


def test_init_from_starts_from_a_saved_set_and_refuses_one_of_another_size(tmp_path):
    syn, dm = bundled_set(ipc=2)
    syn.save(tmp_path / "start.pt")
    imgs = small_model(init_from=str(tmp_path / "start.pt")).initial_images(dm)
    assert torch.equal(imgs, syn.images)  # the saved images exactly, not a draw
    with pytest.raises(
        ValueError, match=r"has 20 images \(labels \[2, 2, .*\] per class\); expected 30 \(ipc 3\)"
    ):
        small_model(ipc=3, init_from=str(tmp_path / "start.pt")).initial_images(dm)
    syn.dataset, syn.mean = "fashionmnist", (0.2861,)
    syn.save(tmp_path / "other.pt")
    with pytest.raises(
        ValueError, match=r"other.pt: field 'dataset' is fashionmnist but the real data module"
    ):
        small_model(init_from=str(tmp_path / "other.pt")).initial_images(dm)


def test_bad_arguments():
    with pytest.raises(ValueError, match="init must be one of"):
        DataDAM(ConvNet(), init="zeros")
    with pytest.raises(TypeError, match="forward_blocks"):
        from ddlight.models import MLP

        DataDAM(MLP())


def test_resume_reaches_the_same_images(tmp_path):
    def cli(*extra):
        return DDLightCLI(
            args=[
                "fit",
                "--config",
                str(CONFIGS / "mnist" / "datadam.yaml"),
                "--data.init_args.source",
                "bundled",
                "--data.init_args.episode_per_class",
                "8",
                "--model.init_args.batch_real",
                "8",
                "--model.init_args.ipc",
                "2",
                "--model.init_args.net.init_args.width",
                "16",
                "--model.init_args.steps_per_network",
                "2",
                "--model.init_args.grid_every",
                "0",
                *("--trainer.logger", "false", "--trainer.enable_progress_bar", "false"),
                *extra,
            ],
        )

    full = cli(
        "--trainer.max_steps",
        "6",
        "--trainer.enable_checkpointing",
        "false",
        "--model.init_args.export_dir",
        str(tmp_path / "full"),
    )
    ckdir = tmp_path / "ck"
    cli(
        "--trainer.max_steps",
        "3",
        "--model.init_args.export_dir",
        str(tmp_path / "part"),
        "--trainer.callbacks+=ModelCheckpoint",
        f"--trainer.callbacks.dirpath={ckdir}",
        "--trainer.callbacks.every_n_train_steps=3",
        "--trainer.callbacks.save_top_k=-1",
    )
    ckpt = sorted(ckdir.glob("*.ckpt"))[-1]
    resumed = cli(
        "--trainer.max_steps",
        "6",
        "--trainer.enable_checkpointing",
        "false",
        "--model.init_args.export_dir",
        str(tmp_path / "resumed"),
        "--ckpt_path",
        str(ckpt),
    )
    assert resumed.trainer.global_step == 6
    torch.testing.assert_close(resumed.model.images.detach(), full.model.images.detach(), rtol=0, atol=1e-6)


def test_mhist_config_fast_dev_run(tmp_path):
    from tests.helpers.mhist import make_mhist_fixture

    root = make_mhist_fixture(tmp_path / "mhist", n_train=8, n_test=4, size=128)
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "datadam_mhist.yaml"),
            "--data.init_args.data_dir",
            str(root),
            "--data.init_args.image_size",
            "128",
            "--data.init_args.episode_per_class",
            "2",
            "--model.init_args.batch_real",
            "2",
            "--model.init_args.ipc",
            "2",
            "--model.init_args.net.init_args.im_size",
            "128",
            "--model.init_args.syn_chunk",  # the chunked synthetic side under manual_backward
            "3",
            "--model.init_args.export_dir",
            str(tmp_path / "out"),
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
    )
    assert cli.trainer.global_step == 1
    assert cli.model.images.shape == (4, 3, 128, 128)
    assert cli.model.images.grad is None or torch.isfinite(cli.model.images.grad).all()
    # flip stays on for histology (no canonical orientation); it is dropped only for digits
    assert "flip" in cli.model.dsa.ops


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_ddp_two_ranks_keep_identical_images(family_ddp_records):
    """The shipped config as the README runs it under DDP (see the fixture): identical images on both
    ranks, one export by rank 0 into the logger's version folder, a checkpoint at the last step."""
    r0, r1 = family_ddp_records["datadam"]
    assert r0["world_size"] == 2 and r0["pid"] != r1["pid"]
    assert torch.equal(r0["images"], r1["images"])
    assert not torch.equal(r0["batches"], r1["batches"])
    latest = family_ddp_records["datadam_logs"] / "datadam_mnist" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "version_0"
    syn = SyntheticSet.load(latest / "synthetic.pt")
    assert syn.iteration == 4 and syn.partial == ""
    torch.testing.assert_close(syn.images, r0["images"])
    assert torch.load(latest / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    written = f"[ddlight] synthetic set written to {family_ddp_records['datadam_logs']}"
    assert family_ddp_records["output"].count(written) == 1  # by rank 0 only


def test_bf16_mixed_precision_on_cpu(tmp_path):
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "datadam.yaml"),
            *TINY_DATADAM,
            "--model.init_args.export_dir",
            str(tmp_path),
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.max_steps",
            "2",
            *QUIET,
        ],
    )
    assert cli.trainer.precision == "bf16-mixed"
    # the learnable set stays fp32 (autocast only lowers the network's compute)
    assert cli.model.images.dtype == torch.float32 and torch.isfinite(cli.model.images).all()
    assert SyntheticSet.load(tmp_path / "synthetic.pt").iteration == 2


def test_evaluate_callback_logs_accuracy(tmp_path):
    from ddlight.callbacks import EvaluateSyntheticCallback

    dm = MNISTDataModule(source="bundled", episode_per_class=4)
    # No net given: the callback evaluates on the distiller's own architecture.
    cb = EvaluateSyntheticCallback(
        every_n_steps=2, num_runs=1, epochs=2, results_path=str(tmp_path / "evals.json")
    )
    model = small_model(batch_real=4, export_dir=str(tmp_path))
    L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[cb]
    ).fit(model, dm)
    assert [h["step"] for h in cb.history] == [2, 3]
    assert {h["architecture"] for h in cb.history} == {type(model.net).__name__}
    import json

    assert len(json.loads((tmp_path / "evals.json").read_text())) == 2


def test_evaluate_callback_refuses_learned_lr_before_distilling(tmp_path):
    """DataDAM learns no student rate: lr='learned' must fail at fit start, not at the first evaluation."""
    from ddlight.callbacks import EvaluateSyntheticCallback

    with pytest.raises(ValueError, match="lr must be a number, 'learned' or 'search'"):
        EvaluateSyntheticCallback(ConvNet(width=8), lr="learnt")
    cb = EvaluateSyntheticCallback(ConvNet(width=8), every_n_steps=1, num_runs=1, epochs=1, lr="learned")
    model = small_model(batch_real=4, export_dir=str(tmp_path))
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[cb]
    )
    with pytest.raises(ValueError, match=r"syn_lr.*DataDAM\.export_extra"):
        trainer.fit(model, MNISTDataModule(source="bundled", episode_per_class=4))
    assert trainer.global_step == 0 and cb.history == []  # no distillation step ran


@pytest.mark.parametrize(
    ("strategy", "applied"),
    [("auto", "color_crop_cutout_scale_rotate"), ("color_crop_cutout_flip_scale_rotate", None)],
)
def test_export_records_the_dsa_strategy_that_ran(tmp_path, strategy, applied):
    """'auto' drops flip for digits and the set records what ran; an explicit strategy keeps flip."""
    model = small_model(batch_real=4, export_dir=str(tmp_path), dsa_strategy=strategy)
    L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(
        model, MNISTDataModule(source="bundled", episode_per_class=4)
    )
    ran = applied or strategy
    assert "_".join(model.dsa.ops) == ran
    assert SyntheticSet.load(tmp_path / "synthetic.pt").config["model"]["dsa_strategy"] == ran


@pytest.mark.parametrize(
    ("net_kw", "syn_chunk"),
    [
        ({"micro_batch": 0, "channels_last": True}, 0),
        ({"micro_batch": 4, "channels_last": True}, 0),
        ({"micro_batch": 4, "channels_last": "no_grad"}, 2),
        ({}, 2),
        pytest.param({"micro_batch": 4, "compile": "no_grad"}, 0, marks=pytest.mark.slow),  # compiles
    ],
)
def test_the_224_path_keeps_the_loss_and_image_gradients_on_a_fixed_batch(net_kw, syn_chunk):
    """The 224x224 path's layout (NHWC, small micro-batches), compiled real side and chunked synthetic side
    against the NCHW 16-image whole-set path: the same network weights, batch and augmentation give the
    same loss and image gradients within float tolerance."""
    torch.manual_seed(0)
    real, syn = torch.randn(2 * 8, 3, 64, 64), torch.randn(2 * 3, 3, 64, 64)
    real_labels = torch.arange(2).repeat_interleave(8)

    def loss_and_grad(net_kw, syn_chunk=0):
        net = ConvNet(channel=3, num_classes=2, width=8, depth=4, im_size=64, **net_kw)
        strategy = "color_crop_cutout_flip_scale_rotate"
        model = DataDAM(net, ipc=3, batch_real=8, dsa_strategy=strategy, syn_chunk=syn_chunk)
        reinitialize(model.net, 7)
        model.num_classes, model.labels = 2, torch.arange(2).repeat_interleave(3)
        model.images = torch.nn.Parameter(syn.clone())
        model.dsa = DSA(strategy)
        loss = model.losses(real, real_labels)["loss"]
        (grad,) = torch.autograd.grad(loss, model.images)
        return loss.detach(), grad

    loss0, grad0 = loss_and_grad({"micro_batch": 16})
    loss1, grad1 = loss_and_grad(net_kw, syn_chunk)
    assert loss0 > 0 and grad0.abs().max() > 0
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad1, grad0, rtol=1e-3, atol=1e-4 * float(grad0.abs().max()))
