"""What MTT, DATM and PAD share (``ddlight.methods.trajectory.core``): the loss against a hand-written
student, one buffer serving all three, the loss falling on real MNIST, the configs, bf16 and DDP."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ddlight.cli import DDLightCLI
from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.methods import DATM, MTT, PAD
from ddlight.models import ConvNet
from tests.helpers import ROOT
from tests.helpers.builders import make_experts, make_trainer, tiny_net
from tests.helpers.trajectory import fit, make_method, plan_of

CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("cls", [MTT, DATM, PAD])
def test_loss_and_image_gradient_match_a_hand_written_student(cls, buffer_dir, tmp_path):
    mask = {"depth_ratio": 0.5} if cls is PAD else {}  # PAD's IPC-2 default masks nothing
    model = make_method(cls, buffer_dir, syn_steps=2, batch_syn=None, **mask)
    # the unrolled student is differentiated twice: ReLU and pooling keep the lean graph (the hand-written
    # student below runs ATen's ops, so this also checks that the lean gradients are the same)
    assert {m.lean for m in model.net.modules() if hasattr(m, "lean")} == {True}
    fit(model, 0, tmp_path)
    plan = plan_of(model)
    traj = model.buffer.load_expert(plan.expert)
    start, target = traj[plan.start_epoch], traj[plan.start_epoch + 1]

    net = tiny_net()
    names, shapes = [n for n, _ in net.named_parameters()], [p.shape for p in net.parameters()]
    sizes = [s.numel() for s in shapes]

    def forward(flat, x):
        params = {n: c.view(s) for n, c, s in zip(names, flat.split(sizes), shapes, strict=True)}
        return functional_call(net, params, (x,))

    soft = model.label_logits is not None
    labels = model.label_logits if soft else model.labels
    flat = start.clone().requires_grad_(True)
    for idx in plan.batches:  # plain SGD at the learned rate, on the whole set (no augmentation)
        out, y = forward(flat, model.images[idx]), labels[idx]
        ce = -(y.softmax(-1) * out.log_softmax(-1)).sum(1).mean() if soft else F.cross_entropy(out, y)
        (g,) = torch.autograd.grad(ce, flat, create_graph=True)
        flat = flat - model.syn_lr * g
    kept = torch.arange(start.numel()) >= int(model.depth_ratio * start.numel())  # FIEM: shallow out
    want = ((flat - target)[kept] ** 2).sum() / ((start - target)[kept] ** 2).sum()

    got, _ = model.iteration_loss(plan)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got, model.images)
    (g_want,) = torch.autograd.grad(want, model.images)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-8)
    assert (model.depth_ratio > 0) == (cls is PAD) and soft == (cls is not MTT)


def test_one_buffer_serves_all_three(buffer_dir, tmp_path):
    for cls in (MTT, DATM, PAD):
        out = tmp_path / cls.__name__
        model = make_method(cls, buffer_dir, export_dir=str(out))
        fit(model, 2, tmp_path)
        syn = SyntheticSet.load(out / "synthetic.pt")
        assert syn.method == cls.method_name and syn.iteration == 2
        assert syn.is_soft == (cls is not MTT)
        # the set records every setting the method ran with, the fixed ones included
        recorded = syn.config["model"]
        assert recorded["soft_labels"] == (cls is not MTT)
        assert (recorded["loss_threshold"] is None) == (cls is MTT)
        assert recorded["depth_ratio"] == (None if cls is PAD else 0.0)


def test_bf16_keeps_fp32_set_and_finite_loss(buffer_dir, tmp_path):
    model = make_method(DATM, buffer_dir, dsa_strategy="color_crop_cutout_scale_rotate")
    fit(model, 0, tmp_path)
    before = model.images.detach().clone()
    fit(model, 2, tmp_path, precision="bf16-mixed")
    for p in (model.images, model.label_logits, model.syn_lr):
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
    assert not torch.equal(model.images, before)


@pytest.fixture(scope="module")
def mnist_buffer(mnist_root, tmp_path_factory) -> Path:
    """Two width-8 ConvNet-3 experts x 2 epochs of 3 batches on the real MNIST, no curriculum."""
    root = tmp_path_factory.mktemp("mnist_buffer")
    experts = make_experts(root / "buf", net=mnist_net(), epochs=2, scheduler=False, lr=0.05)
    make_trainer(4, root).fit(experts, datamodule=MNISTDataModule(data_dir=str(mnist_root)))
    return root / "buf"


def mnist_net() -> ConvNet:
    return ConvNet(channel=1, num_classes=10, width=8, depth=3, im_size=28)


@pytest.mark.parametrize("cls", [MTT, DATM])
def test_loss_goes_down_on_real_mnist(cls, mnist_buffer, mnist_root, tmp_path):
    def build():
        return make_method(cls, mnist_buffer, mnist_net(), ipc=1, lr_img=100.0)

    dm = MNISTDataModule(data_dir=str(mnist_root), episode_per_class=1)
    untrained = build()
    fit(untrained, 0, tmp_path, dm=dm)
    plans = [plan_of(untrained, s) for s in range(4)]

    def mean_loss(model) -> float:  # the same (expert, start, batches) draws before and after
        return sum(float(model.iteration_loss(p)[0].detach()) for p in plans) / len(plans)

    trained = build()
    fit(trained, 8, tmp_path, dm=dm)
    assert mean_loss(trained) < mean_loss(untrained)


@pytest.mark.parametrize("name", ["mtt", "datm"])
@pytest.mark.parametrize("suffix", ["", "_ipc1", "_ipc10", "_ipc50"])
def test_configs_instantiate(name, suffix):
    cli = DDLightCLI(args=["--config", str(ROOT / "configs" / "mnist" / f"{name}{suffix}.yaml")], run=False)
    assert cli.model.method_name == name
    hp = cli.model.settings
    # start epochs are drawn from [min, max_start_epoch): the last one plus M must fit the buffer it reads
    assert hp.max_start_epoch - 1 + hp.expert_epochs <= (4 if suffix == "" else 50)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_ddp_two_ranks_keep_identical_sets(family_ddp_records):
    """Each rank draws its own expert and start epoch; the all-reduced update keeps one set."""
    r0, r1 = family_ddp_records["datm"]
    assert r0["world_size"] == 2 and r0["pid"] != r1["pid"] and torch.equal(r0["images"], r1["images"])
    assert set(r0["learned"]) == {"label_logits", "syn_lr"}
    for name, value in r0["learned"].items():
        assert torch.equal(value, r1["learned"][name]), name
