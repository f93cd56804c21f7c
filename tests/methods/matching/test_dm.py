import lightning as L
import pytest
import torch
from torch import nn

from ddlight.cli import DDLightCLI
from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.methods import DM
from ddlight.models import ConvNet
from ddlight.ops.augment import DSA
from tests.helpers import CONFIGS
from tests.helpers.cli_args import TINY_DATADAM
from tests.helpers.runs import (
    assert_bf16_run_kept_fp32_images,
    assert_resume_reaches_the_same_images,
    bf16_logged_run_flags,
)


class Flatten(nn.Module):
    """A 'network' whose embedding is the image itself, so DM's loss can be computed by hand."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def test_mean_embedding_loss_by_hand():
    dm = DM(Flatten(), ipc=1)
    dm.num_classes = 2
    dm.dsa = DSA("none")
    dm.images = nn.Parameter(torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(2, 1, 1, 2))
    dm.labels = torch.tensor([0, 1])
    real = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]]).view(4, 1, 1, 2)
    out = dm.losses(real, torch.tensor([0, 0, 1, 1]))
    # class means (2, 0) and (0, 3); class 0: (2-1)^2 + (0-1)^2 = 2, class 1: 0 + (3-0)^2 = 9
    assert float(out["loss"]) == pytest.approx(11.0)
    out["loss"].backward()  # d/dsyn: -2 (mean_real - syn) per class
    torch.testing.assert_close(dm.images.grad.view(2, 2), torch.tensor([[-2.0, 2.0], [0.0, -6.0]]))


def test_loss_decreases_on_mnist_and_only_the_images_move(tmp_path):
    dm = MNISTDataModule(source="bundled", episode_per_class=8)
    model = DM(
        ConvNet(width=8),
        ipc=2,
        batch_real=8,
        lr_img=10.0,
        steps_per_network=100,
        grid_every=0,
        dsa_strategy="none",
        export_dir=str(tmp_path),
    )
    seen, first_net = [], {}

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(outputs["loss"]))
            if not first_net:
                first_net.update({k: v.clone() for k, v in pl_module.net.state_dict().items()})

    L.Trainer(
        max_steps=12, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[Track()]
    ).fit(model, dm)
    assert sum(seen[-3:]) / 3 < 0.8 * sum(seen[:3]) / 3, seen
    assert all(torch.equal(first_net[k], v) for k, v in model.net.state_dict().items())  # never trained
    assert not torch.allclose(model.images.detach(), model.initial_images(dm))
    assert torch.equal(model.labels, torch.arange(10).repeat_interleave(2))
    syn = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert syn.method == "dm" and syn.iteration == 12 and syn.ipc == 2


def test_a_fresh_network_every_step_by_default(tmp_path):
    dm = MNISTDataModule(source="bundled", episode_per_class=4)
    model = DM(ConvNet(width=8), ipc=1, batch_real=4, grid_every=0, export_dir=str(tmp_path))
    nets = []

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            nets.append(pl_module.net.blocks[0][0].weight.detach().clone())

    L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Track()],
    ).fit(model, dm)
    assert not torch.equal(nets[0], nets[1])


def test_noise_init_and_bad_network():
    dm = MNISTDataModule(source="bundled")
    dm.setup()
    n = DM(ConvNet(width=8), ipc=2, init="noise").initial_images(dm)
    assert n.shape == (20, 1, 28, 28) and abs(float(n.std()) - 1) < 0.1
    with pytest.raises(TypeError, match="embed"):
        DM(nn.Linear(2, 2))


def _cli(*extra):
    return DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "dm.yaml"),
            *TINY_DATADAM,
            "--model.init_args.grid_every",
            "0",
            *extra,
        ]
    )


@pytest.mark.slow
def test_resume_reaches_the_same_images(tmp_path):
    def run(steps, out, *extra):
        return _cli(
            "--trainer.max_steps",
            str(steps),
            "--model.init_args.export_dir",
            str(tmp_path / out),
            "--model.init_args.dsa_strategy",
            "auto",
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            *extra,
        )

    assert_resume_reaches_the_same_images(run, tmp_path, total=4, split=2)


def test_bf16_and_tensorboard(tmp_path):
    cli = _cli(*bf16_logged_run_flags(tmp_path), "--trainer.enable_progress_bar", "false")
    assert_bf16_run_kept_fp32_images(cli, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_ddp_two_ranks_keep_identical_images(family_ddp_records):
    r0, r1 = family_ddp_records["dm"]
    assert r0["world_size"] == 2 and r0["pid"] != r1["pid"] and torch.equal(r0["images"], r1["images"])
    assert not torch.equal(r0["batches"], r1["batches"])
