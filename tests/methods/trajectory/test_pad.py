"""PAD stage 2 (trajectory matching): the mask, the loss, gradients, checkpointed unrolling, export.

A two-expert buffer of the width-8 ConvNet on 12x12 synthetic digits (``tests.helpers.builders``) keeps
every test to a few seconds on two cores.
"""

import json
import math
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.data import SyntheticSet
from ddlight.methods import PAD
from ddlight.methods.trajectory import (
    default_depth_ratio,
    fiem_mask,
    kept_per_parameter,
    minibatch_schedule,
    segment_bounds,
)
from ddlight.methods.trajectory.unroll import segments_for_budget
from ddlight.models import ConvNet
from ddlight.models.kernels import MaskReLU
from ddlight.ops.losses import matching_loss
from tests.helpers import ROOT
from tests.helpers.builders import TinyDigits, tiny_net
from tests.helpers.cli_args import QUIET, TINY_TRAJECTORY
from tests.helpers.trajectory import fit, make_method, plan_of

CONFIGS = ROOT / "configs"


def make_pad(buffer_dir: Path, **kw) -> PAD:
    return make_method(PAD, buffer_dir, **{"lr_label": 1.0, "loss_threshold": None, **kw})


# ------------------------------------------------------------------------------------------ pure parts


def test_fiem_mask_keeps_the_deep_parameters():
    net = tiny_net()
    names = [n for n, _ in net.named_parameters()]
    sizes = [p.numel() for p in net.parameters()]
    assert sum(sizes) == 988  # conv 72+8, norm 8+8, conv 576+8, norm 8+8, linear 288+4
    mask = fiem_mask(sizes, 0.5)
    assert mask.shape == (988,) and int(mask.sum()) == 988 - 494
    assert not mask[:494].any() and mask[494:].all()  # a prefix: the shallowest parameters
    kept = kept_per_parameter(names, sizes, mask)
    assert [n for n, k in kept.items() if k == 0] == [
        "blocks.0.0.weight",
        "blocks.0.0.bias",
        "blocks.0.1.weight",
        "blocks.0.1.bias",
    ]
    assert kept["blocks.1.0.weight"] == 576 - (494 - 96)  # PAD cuts by count, inside this tensor
    full = [n for n, k in kept.items() if k == dict(zip(names, sizes, strict=True))[n]]
    assert full == [
        "blocks.1.0.bias",
        "blocks.1.1.weight",
        "blocks.1.1.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert fiem_mask(sizes, 0.0).all()
    with pytest.raises(ValueError, match="depth_ratio"):
        fiem_mask(sizes, 1.0)
    # PAD's CIFAR-10 configs, by IPC.
    assert [default_depth_ratio(i) for i in (1, 5, 10, 50, 100, 500, 1000)] == [
        0.0,
        0.0,
        0.5,
        0.25,
        0.25,
        0.5,
        0.5,
    ]


def test_module_mask_follows_ipc_and_override(tmp_path):
    assert int(PAD(tiny_net(), buffer_dir=str(tmp_path), ipc=1).fiem.sum()) == 988
    assert int(PAD(tiny_net(), buffer_dir=str(tmp_path), ipc=10).fiem.sum()) == 494
    assert int(PAD(tiny_net(), buffer_dir=str(tmp_path), ipc=10, depth_ratio=0.25).fiem.sum()) == 988 - 247


def test_matching_loss_by_hand():
    start = torch.zeros(4)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(matching_loss(target.clone(), start, target)) == 0.0  # landed on the target
    assert float(matching_loss(start.clone(), start, target)) == 1.0  # did not move
    student = torch.tensor([0.0, 0.0, 3.0, 2.0])
    # all: (1 + 4 + 0 + 4) / (1 + 4 + 9 + 16)
    assert float(matching_loss(student, start, target)) == pytest.approx(9 / 30)
    # the first entry masked out of both norms: (4 + 0 + 4) / (4 + 9 + 16)
    mask = torch.tensor([False, True, True, True])
    assert float(matching_loss(student, start, target, mask)) == pytest.approx(8 / 29)
    # a difference only in masked-out entries costs nothing
    assert float(matching_loss(torch.tensor([5.0, 2.0, 3.0, 4.0]), start, target, mask)) == 0.0


def test_minibatches_and_segments():
    gen = torch.Generator().manual_seed(0)
    batches = minibatch_schedule(10, 4, 5, gen)
    # chunks 4,4,2 of a permutation taken from the end: the remainder first
    assert [len(b) for b in batches] == [2, 4, 4, 2, 4]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    assert segment_bounds(10, 0) == [0, 10] and segment_bounds(10, 3) == [0, 3, 7, 10]
    assert segment_bounds(2, 5) == [0, 1, 2]


# ------------------------------------------------------------------------------------ with a buffer


def test_setup_soft_labels_and_gradients(buffer_dir, tmp_path):
    model = make_pad(buffer_dir, export_dir=str(tmp_path))
    fit(model, 0, tmp_path)  # set-up and export only
    n = 4 * 2
    assert model.images.shape == (n, 1, 12, 12) and model.label_logits.shape == (n, 4)
    assert torch.equal(model.labels, torch.arange(4).repeat_interleave(2))
    # real init keeps images the expert classifies correctly, so the soft labels name their class
    assert torch.equal(model.label_logits.argmax(1), model.labels)
    assert float(model.syn_lr.detach()) == pytest.approx(0.05)

    loss, graph_mb = model.iteration_loss(plan_of(model))
    assert torch.isfinite(loss) and graph_mb > 0
    loss.backward()
    for p in (model.images, model.label_logits, model.syn_lr):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("soft", [True, False])
def test_checkpointed_segments_match_the_full_graph(buffer_dir, tmp_path, soft):
    model = make_pad(buffer_dir, syn_steps=5, soft_labels=soft, dsa_strategy="color_crop_cutout_scale_rotate")
    fit(model, 0, tmp_path)
    plan = plan_of(model)
    learned = [p for p in (model.images, model.label_logits, model.syn_lr) if p is not None]
    results, lean_calls = [], []
    relus = [m for m in model.net.modules() if isinstance(m, MaskReLU)]
    hooks = [m.register_forward_hook(lambda m, i, o: lean_calls[-1].append(m.lean)) for m in relus]
    for segments in (0, 5):
        model.settings.checkpoint_segments = segments
        for p in learned:
            p.grad = None
        lean_calls.append([])
        loss, graph_mb = model.iteration_loss(plan)
        loss.backward()
        results.append((loss.detach(), graph_mb, [p.grad.clone() for p in learned]))
    for h in hooks:
        h.remove()
    # a kept graph is lean; the segments' graph-free pass runs ATen's first-order ReLU, then recomputes lean
    steps = 5 * len(relus)
    assert lean_calls[0] == [True] * steps and lean_calls[1] == [False] * steps + [True] * steps
    (l0, mb0, g0), (l1, mb1, g1) = results
    torch.testing.assert_close(l1, l0)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    assert mb1 < mb0 / 10  # one step a segment, each keeping only its boundary (a kept step: mb0 / 5)


def test_segments_by_hand_from_a_memory_budget():
    assert segments_for_budget(step_mb=10.0, steps=8, budget_mb=80.0) == 0  # everything fits
    assert segments_for_budget(10.0, 8, 30.0) == 3  # 3 steps per segment -> 3 segments
    assert segments_for_budget(10.0, 8, 5.0) == 8  # below one step: one step per segment
    with pytest.raises(ValueError, match="memory_budget_mb must be > 0"):
        make_pad(Path("unused"), memory_budget_mb=0.0)


def test_a_memory_budget_chooses_segments_and_keeps_the_gradients(buffer_dir, tmp_path):
    model = make_pad(
        buffer_dir, syn_steps=6, dsa_strategy="color_crop_cutout_scale_rotate", memory_budget_mb=None
    )
    fit(model, 0, tmp_path)
    plan = plan_of(model)
    whole, whole_mb = model.iteration_loss(plan)
    (g_whole,) = torch.autograd.grad(whole, model.images)
    model.settings.memory_budget_mb = 2.5 * whole_mb / 6  # about two steps of graph
    budgeted, budget_mb = model.iteration_loss(plan)
    (g_budget,) = torch.autograd.grad(budgeted, model.images)
    assert model._budget_segments == 3 and budget_mb < whole_mb / 2
    torch.testing.assert_close(budgeted, whole)
    torch.testing.assert_close(g_budget, g_whole, rtol=1e-4, atol=1e-7)
    model.settings.checkpoint_segments = 0  # a count, when given, wins over the budget
    assert model.iteration_loss(plan)[1] == pytest.approx(whole_mb, rel=1e-3)  # the whole graph again


def test_by_default_a_graph_that_fits_is_kept_whole(buffer_dir, tmp_path):
    model = make_pad(buffer_dir, syn_steps=6, dsa_strategy="color_crop_cutout_scale_rotate")
    assert model.settings.checkpoint_segments is None and model.settings.memory_budget_mb == 1024.0
    fit(model, 0, tmp_path)
    model.iteration_loss(plan_of(model))
    assert model._budget_segments == 0 and model._segments == 0


def test_training_lowers_the_loss_and_exports(buffer_dir, tmp_path):
    untrained = make_pad(buffer_dir, lr_img=30.0)
    fit(untrained, 0, tmp_path)
    plans = [plan_of(untrained, s) for s in range(3)]

    def mean_loss(model: PAD) -> float:  # the same three (expert, start, batches) draws for both
        return sum(float(model.iteration_loss(p)[0].detach()) for p in plans) / len(plans)

    trained = make_pad(buffer_dir, export_dir=str(tmp_path), lr_img=30.0)
    fit(trained, 12, tmp_path)
    assert not torch.equal(trained.images, untrained.images)
    assert mean_loss(trained) < mean_loss(untrained)

    syn = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert syn.method == "pad" and syn.iteration == 12 and syn.is_soft
    assert syn.labels.shape == (8, 4) and syn.labels.dtype == torch.float32
    torch.testing.assert_close(syn.labels, trained.label_logits.detach())
    assert syn.extra["syn_lr"] == pytest.approx(float(trained.syn_lr.detach()))
    assert math.isfinite(syn.extra["syn_lr"]) and syn.extra["distill_seconds"] > 0
    assert (tmp_path / "grid.png").exists()


def test_threshold_skips_the_update(buffer_dir, tmp_path):
    model = make_pad(buffer_dir, loss_threshold=0.0)  # every loss exceeds it
    fit(model, 0, tmp_path)
    before = [p.detach().clone() for p in (model.images, model.label_logits, model.syn_lr)]
    with pytest.warns(UserWarning, match="every iteration's loss exceeded loss_threshold"):
        fit(model, 3, tmp_path)
    assert int(model._skipped) == 3 and model._iterations == 3
    for a, p in zip(before, (model.images, model.label_logits, model.syn_lr), strict=True):
        assert torch.equal(a, p.detach())


def test_hard_labels_and_noise_init(buffer_dir, tmp_path):
    hard = make_pad(buffer_dir, soft_labels=False, export_dir=str(tmp_path / "hard"))
    fit(hard, 1, tmp_path)
    assert hard.label_logits is None
    assert torch.equal(SyntheticSet.load(tmp_path / "hard" / "synthetic.pt").labels, hard.labels)
    noise = make_pad(buffer_dir, init="noise")
    fit(noise, 0, tmp_path)
    # every image of a class starts from the same class-typical soft label, which names the class
    per_class = noise.label_logits.detach().view(4, 2, 4)
    assert torch.equal(per_class[:, 0], per_class[:, 1])
    assert torch.equal(per_class[:, 0].argmax(1), torch.arange(4))
    fit(noise, 1, tmp_path)
    assert torch.isfinite(noise.images).all() and torch.isfinite(noise.label_logits).all()


def test_missing_or_empty_buffer_is_a_clear_error(buffer_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"configs/tinydigits/experts\.yaml") as err:
        fit(make_pad(tmp_path / "nowhere"), 1, tmp_path)
    assert "nowhere" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = json.loads((buffer_dir / "manifest.json").read_text())
    (empty / "manifest.json").write_text(json.dumps({**manifest, "completed": []}))
    with pytest.raises(FileNotFoundError, match="no completed expert"):
        fit(make_pad(empty), 1, tmp_path)


def test_wrong_net_or_window_is_refused(buffer_dir, tmp_path):
    wide = PAD(
        ConvNet(channel=1, num_classes=4, width=16, depth=2, im_size=12), buffer_dir=str(buffer_dir), ipc=1
    )
    with pytest.raises(ValueError, match="does not match the experts"):
        fit(wide, 1, tmp_path)
    with pytest.raises(ValueError, match="max_start_epoch"):
        fit(make_pad(buffer_dir, max_start_epoch=3, expert_epochs=2), 1, tmp_path)
    with pytest.raises(ValueError, match="init"):
        make_pad(buffer_dir, init="kcenter")


def test_experts_of_other_whitening_are_refused(buffer_dir, tmp_path):
    """The buffer was trained on un-whitened TinyDigits; a ZCA data module must not match against it."""
    whitened = TinyDigits()
    whitened.zca = True
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False)
    with pytest.raises(
        ValueError,
        match=r"trained on 'tinydigits' with ZCA off, but PAD's data module is "
        r"'tinydigits' with ZCA \{'reg': 0.1",
    ):
        trainer.fit(make_pad(buffer_dir, export_dir=str(tmp_path)), datamodule=whitened)


def test_start_epoch_window_grows(tmp_path):
    model = PAD(
        tiny_net(),
        buffer_dir=str(tmp_path),
        min_start_epoch=0,
        current_max_start_epoch=10,
        max_start_epoch=20,
        max_start_epoch_growth_steps=1000,
    )
    assert [model.max_start_bound(s) for s in (0, 99, 100, 500, 1000, 5000)] == [10, 10, 11, 15, 20, 20]
    model.settings.max_start_epoch_growth_steps = 0
    assert model.max_start_bound(0) == 20


GPU = ("gpu/experts",)  # the GPU overlays pair with the GPU buffer's overlay


@pytest.mark.parametrize(
    ("pad", "experts"),
    [
        (("pad",), ("experts",)),
        (("pad_noise",), ("experts",)),
        (("pad_ipc1",), ("experts",)),
        (("pad_ipc10",), ("experts",)),
        (("pad_ipc100",), ("experts",)),
        (("pad_ipc1_early",), ("experts_early",)),
        *(
            ((name, f"gpu/{name}"), ("experts", *GPU))
            for name in ("pad_ipc1", "pad_ipc10", "pad_ipc100", "pad_noise")
        ),
    ],
)
def test_configs_parse(pad, experts, tmp_path, monkeypatch):
    """Each PAD config (with its overlays) must fit the buffer its experts config writes: same net, window
    inside the epochs."""
    monkeypatch.chdir(tmp_path)

    def parsed(names):
        return DDLightCLI(
            args=[a for n in names for a in ("--config", str(CONFIGS / "mnist" / f"{n}.yaml"))], run=False
        )

    cli, experts = parsed(pad), parsed(experts).model
    assert isinstance(cli.model, PAD) and cli.model.hparams.buffer_dir == experts.hparams.buffer_dir
    assert [n for n, _ in cli.model.net.named_parameters()] == [n for n, _ in experts.net.named_parameters()]
    assert [p.shape for p in cli.model.net.parameters()] == [p.shape for p in experts.net.parameters()]
    hp = cli.model.hparams
    assert hp.max_start_epoch - 1 + hp.expert_epochs <= experts.hparams.epochs


def test_cpu_ipc1_config_keeps_the_gpu_recipe(tmp_path, monkeypatch):
    """configs/mnist/pad_ipc1_early.yaml is documented as the GPU IPC 1 recipe on a CPU buffer."""
    monkeypatch.chdir(tmp_path)

    def recipe(*paths):
        args = [a for p in paths for a in ("--config", str(p))]
        hp = dict(DDLightCLI(args=args, run=False).model.hparams)
        return {k: v for k, v in hp.items() if k not in ("net", "buffer_dir", "export_dir")}

    gpu = recipe(CONFIGS / "mnist" / "pad_ipc1.yaml", CONFIGS / "mnist" / "gpu" / "pad_ipc1.yaml")
    assert recipe(CONFIGS / "mnist" / "pad_ipc1_early.yaml") == gpu and gpu["syn_steps"] == 80


def test_cli_distils_from_a_buffer(buffer_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(buffer_dir, tmp_path / "artifacts" / "experts_mnist")
    DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "pad.yaml"),
            *TINY_TRAJECTORY,
            "--model.init_args.checkpoint_segments",
            "2",
            "--model.init_args.export_dir",
            "out",
            "--trainer.max_steps",
            "2",
            *QUIET,
        ],
    )
    syn = SyntheticSet.load(tmp_path / "out" / "synthetic.pt")
    assert syn.method == "pad" and syn.iteration == 2 and syn.labels.shape == (8, 4)


def test_resume_reaches_the_same_set(buffer_dir, tmp_path):
    straight = make_pad(buffer_dir, dsa_strategy="color_crop_cutout_scale_rotate")
    fit(straight, 3, tmp_path)
    first = make_pad(buffer_dir, dsa_strategy="color_crop_cutout_scale_rotate")
    trainer = fit(first, 2, tmp_path)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    resumed = make_pad(buffer_dir, dsa_strategy="color_crop_cutout_scale_rotate")
    fit(resumed, 3, tmp_path, ckpt_path=tmp_path / "two.ckpt")
    assert resumed.global_step == 3
    for name in ("images", "label_logits", "syn_lr"):
        torch.testing.assert_close(getattr(resumed, name), getattr(straight, name), rtol=1e-5, atol=1e-6)


def test_loss_ratio_is_pads_alone(tmp_path):
    """The released PAD.py's FIEM (``loss_ratio``) is a PAD argument; MTT and DATM fix it at 0."""
    from ddlight.methods.trajectory import DATM, MTT
    from tests.helpers.trajectory import exposed

    assert exposed(PAD)["loss_ratio"] == 0.0
    assert "loss_ratio" not in exposed(MTT) and "loss_ratio" not in exposed(DATM)
    assert PAD(tiny_net(), buffer_dir=str(tmp_path), loss_ratio=0.5).settings.loss_ratio == 0.5
    with pytest.raises(ValueError, match="loss_ratio"):
        PAD(tiny_net(), buffer_dir=str(tmp_path), loss_ratio=1.0)
