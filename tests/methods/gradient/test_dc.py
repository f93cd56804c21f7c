import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddlight.cli import DDLightCLI
from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.methods import DC
from ddlight.methods.gradient import get_loops
from ddlight.models import ConvNet
from ddlight.models.init import mix_seed, reinitialize
from ddlight.ops.augment import DSA
from ddlight.ops.losses import gradient_distance
from tests.helpers import CONFIGS
from tests.helpers.cli_args import SHORT_DSA, TINY_DATADAM
from tests.helpers.runs import (
    assert_bf16_run_kept_fp32_images,
    assert_resume_reaches_the_same_images,
    bf16_logged_run_flags,
)


def test_gradient_distance_by_hand():
    # a linear weight, one class: rows (2, 0) vs (1, 0) agree (cos 1), rows (1, 0) vs (0, 1) are orthogonal
    lin_syn, lin_real = torch.tensor([[[2.0, 0.0], [1.0, 0.0]]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # a conv weight (out 1, in 1, 1x2), two classes: orthogonal (1 - 0) and opposite (1 - (-1))
    conv_syn = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(2, 1, 1, 1, 2)
    conv_real = torch.tensor([[1.0, -1.0], [-1.0, 0.0]]).view(2, 1, 1, 1, 2)
    bias_syn, bias_real = torch.tensor([[5.0, -3.0]]), torch.tensor([[1.0, 1.0]])  # per-channel: skipped
    d = gradient_distance([lin_syn, bias_syn], [lin_real, bias_real])
    assert float(d) == pytest.approx(1.0, abs=1e-5)
    assert float(gradient_distance([conv_syn], [conv_real])) == pytest.approx(3.0, abs=1e-5)


def _reference_match_loss(net: nn.Module, real, real_y, syn, syn_y, k: int) -> torch.Tensor:
    """The reference's per-class loop: autograd.grad per class, distance_wb per parameter ('ours')."""
    params = list(net.parameters())
    loss = torch.zeros(())
    for c in range(k):
        gr = torch.autograd.grad(F.cross_entropy(net(real[real_y == c]), real_y[real_y == c]), params)
        gs = torch.autograd.grad(
            F.cross_entropy(net(syn[syn_y == c]), syn_y[syn_y == c]), params, create_graph=True
        )
        for a, b in zip(gr, gs, strict=True):
            if a.dim() == 1:
                continue
            a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            loss = loss + torch.sum(1 - torch.sum(a * b, -1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6))
    return loss


def test_vectorised_loss_matches_the_reference_loop():
    torch.manual_seed(0)
    k = 3
    net = ConvNet(channel=1, num_classes=k, width=8, depth=2, im_size=12)
    model = DC(net, ipc=2, outer_loop=1, inner_loop=0)
    model.num_classes, model.dsa = k, DSA("none")
    model.images = nn.Parameter(torch.randn(k * 2, 1, 12, 12))
    model.labels = torch.arange(k).repeat_interleave(2)
    real, real_y = torch.randn(k * 5, 1, 12, 12), torch.arange(k).repeat_interleave(5)
    loss = model.losses(real, real_y)["loss"]
    (g,) = torch.autograd.grad(loss, model.images)
    ref_net = ConvNet(channel=1, num_classes=k, width=8, depth=2, im_size=12)
    ref_net.load_state_dict(net.state_dict())
    syn = model.images.detach().clone().requires_grad_()
    ref = _reference_match_loss(ref_net, real, real_y, syn, model.labels, k)
    (g_ref,) = torch.autograd.grad(ref, syn)
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-3, atol=1e-6)


def test_siamese_draw_gives_identical_sides_zero_distance():
    """DSA: a synthetic set equal to the real batch, augmented by the same per-class draw, has identical
    gradients (distance ~0), although the augmentation does change the images."""
    torch.manual_seed(0)
    model = DC(
        ConvNet(channel=1, num_classes=2, width=8, depth=2, im_size=12),
        ipc=3,
        outer_loop=1,
        inner_loop=0,
        dsa_strategy="color_crop_cutout_scale_rotate",
    )
    model.num_classes, model.dsa = 2, DSA("color_crop_cutout_scale_rotate")
    real, y = torch.randn(6, 1, 12, 12), torch.arange(2).repeat_interleave(3)
    model.images, model.labels = nn.Parameter(real.clone()), y
    assert float(model.losses(real, y)["loss"]) < 1e-3
    assert not torch.allclose(model.dsa.apply(real, model.siamese_params(), y), real)
    assert model.method_name == "dsa" and DC(ConvNet(width=8), ipc=1).method_name == "dc"


def test_get_loops_and_bad_arguments():
    assert [get_loops(i) for i in (1, 10, 20, 30, 40, 50)] == [
        (1, 1),
        (10, 50),
        (20, 25),
        (30, 20),
        (40, 15),
        (50, 10),
    ]
    with pytest.raises(ValueError, match="outer_loop"):
        DC(ConvNet(width=8), ipc=2)
    assert DC(ConvNet(width=8), ipc=2, outer_loop=3, inner_loop=0).outer_loop == 3
    with pytest.raises(ValueError, match="batch norm"):
        DC(ConvNet(width=8, norm="batchnorm"), ipc=1)


def _fit(model, steps, tmp_path, *callbacks):
    dm = MNISTDataModule(source="bundled", episode_per_class=model.hparams.batch_real)
    L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
    ).fit(model, dm)
    return dm


def test_loss_decreases_on_mnist_in_one_network(tmp_path):
    model = DC(
        ConvNet(width=8),
        ipc=2,
        init="real",
        batch_real=16,
        lr_img=1.0,
        outer_loop=100,
        inner_loop=0,
        grid_every=0,
        export_dir=str(tmp_path),
    )
    seen, nets = [], []

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"]))
            nets.append(pl_module.net.classifier.weight.detach().clone())

    dm = _fit(model, 12, tmp_path, Track())
    assert sum(seen[-3:]) / 3 < 0.8 * sum(seen[:3]) / 3, seen
    assert all(torch.equal(nets[0], n) for n in nets)  # inner_loop 0: the network never trains
    assert not torch.allclose(model.images.detach(), model.initial_images(dm))
    assert torch.equal(model.labels, torch.arange(10).repeat_interleave(2))
    assert SyntheticSet.load(tmp_path / "synthetic.pt").method == "dc"


def test_network_trains_between_updates_and_is_redrawn_per_outer_iteration(tmp_path):
    model = DC(
        ConvNet(width=8),
        ipc=1,
        batch_real=4,
        outer_loop=3,
        inner_loop=1,
        grid_every=0,
        export_dir=str(tmp_path),
    )
    nets = []

    class Track(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            nets.append({k: v.clone() for k, v in pl_module.net.state_dict().items()})

    _fit(model, 5, tmp_path, Track())
    fresh = reinitialize(ConvNet(width=8), mix_seed(0, 1, 1)).state_dict()
    # before step 1 and 2 the net has trained on the set; before step 4 (after step 3 redrew it) it trained
    # once on top of the fresh draw of outer iteration 1, so it differs from both
    assert not torch.equal(nets[1]["classifier.weight"], nets[2]["classifier.weight"])
    assert not torch.equal(nets[4]["classifier.weight"], fresh["classifier.weight"])
    after_redraw = model.net.state_dict()
    assert not torch.equal(after_redraw["classifier.weight"], nets[2]["classifier.weight"])


# DSA with two image updates per network and one inner epoch between them: every code path in two steps.


def _cli(*extra):
    return DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "dc.yaml"),
            *TINY_DATADAM,
            "--model.init_args.grid_every",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            *extra,
        ]
    )


@pytest.mark.slow
def test_resume_in_the_middle_of_a_network_reaches_the_same_images(tmp_path):
    """Checkpoint after 2 of a network's 4 updates: the resumed run must continue with the trained network
    and its inner-loop momentum (module state), then draw the same next network."""

    def run(steps, out, *extra):
        return _cli(
            "--trainer.max_steps",
            str(steps),
            "--model.init_args.export_dir",
            str(tmp_path / out),
            "--model.init_args.outer_loop",
            "4",
            "--model.init_args.inner_loop",
            "1",
            "--model.init_args.dsa_strategy",
            "auto",
            "--trainer.logger",
            "false",
            *extra,
        )

    assert_resume_reaches_the_same_images(run, tmp_path, total=5, split=2)


def test_bf16_dsa_and_tensorboard(tmp_path):
    cli = _cli(*bf16_logged_run_flags(tmp_path), *SHORT_DSA)
    assert_bf16_run_kept_fp32_images(cli, tmp_path)
    syn = SyntheticSet.load(tmp_path / "out" / "synthetic.pt")
    assert syn.method == "dsa" and syn.config["model"]["dsa_strategy"] == "color_crop_cutout_scale_rotate"


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_ddp_two_ranks_keep_identical_images(family_ddp_records):
    r0, r1 = family_ddp_records["dsa"]
    assert r0["world_size"] == 2 and r0["pid"] != r1["pid"] and torch.equal(r0["images"], r1["images"])
    assert not torch.equal(r0["batches"], r1["batches"])
