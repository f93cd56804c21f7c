"""PAD stage 1 (expert buffer): file format, resume, EL2N, the FIEX curriculum and the CLI path.

Everything runs on a 160-image synthetic digit set and a width-8 ConvNet so the file stays well under a
minute on two cores.
"""

import json
import math

import lightning as L
import pytest
import torch
from torch import nn

from ddlight.cli import DDLightCLI
from ddlight.data.zca import Normalizer
from ddlight.methods.trajectory import (
    FIEX,
    ExpertBuffer,
    Experts,
    Stream,
    el2n,
    el2n_scores,
    expert_filename,
    fiex_phase,
    fiex_schedule,
    flatten_parameters,
)
from ddlight.models.init import mix_seed, reinitialize
from tests.helpers import ROOT
from tests.helpers.builders import TinyDigits, make_experts, make_trainer, tiny_net
from tests.helpers.cli_args import QUIET, TINY_DIGITS_NET


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One full two-expert run shared by the format tests."""
    root = tmp_path_factory.mktemp("experts")
    module = make_experts(root / "buf")
    make_trainer(6, root).fit(module, datamodule=TinyDigits())
    return root / "buf", module


def test_buffer_round_trip(trained):
    buf_dir, module = trained
    buf = ExpertBuffer(buf_dir)
    man = json.loads((buf_dir / "manifest.json").read_text())
    assert man["format_version"] == 1 and man["num_experts"] == 2 and man["epochs"] == 3
    assert [c["index"] for c in man["completed"]] == [0, 1] and buf.num_completed == 2
    assert all(0.0 <= c["test_acc"] <= 1.0 for c in man["completed"])
    net = tiny_net()
    assert buf.param_names == [n for n, _ in net.named_parameters()]
    assert buf.param_shapes == [tuple(p.shape) for p in net.parameters()]
    assert man["dataset"]["num_train"] == 160 and man["recipe"]["lr"] == 0.01
    assert man["recipe"]["seeding"] == "mix_seed"

    traj = buf.load_expert(0)
    assert traj.dtype == torch.float32 and traj.shape == (4, sum(p.numel() for p in net.parameters()))
    # Row 0 is the seeded initialisation, reproducible without the run.
    init = flatten_parameters(reinitialize(tiny_net(), mix_seed(0, Stream.EXPERT_INIT, 0)))
    assert torch.equal(traj[0], init)
    assert not torch.equal(traj[-1], traj[0])
    assert not torch.equal(buf.load_expert(1)[0], traj[0])  # experts start from different points
    # The last row is the network the module ended with (expert 1 was trained last).
    assert torch.equal(buf.load_expert(1)[-1], flatten_parameters(module.net))

    mapped = buf.load_expert(0, mmap=True)  # what the PAD distiller reads: same values, pages on demand
    assert torch.equal(mapped[1], traj[1])

    params = buf.unflatten(traj[-1])
    net.load_state_dict(params)
    assert torch.equal(flatten_parameters(net), traj[-1])

    scores = buf.load_el2n()
    assert scores.shape == (160,) and torch.all(scores >= 0) and torch.all(scores <= math.sqrt(2))


class Crash(L.Callback):
    """Simulates an interruption partway through expert 1."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 4:
            raise RuntimeError("simulated crash")


def test_resume_trains_only_missing_experts(tmp_path):
    buf_dir = tmp_path / "buf"
    first = make_trainer(6, tmp_path)
    first.callbacks.append(Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.fit(make_experts(buf_dir, scheduler=False), datamodule=TinyDigits())
    assert ExpertBuffer(buf_dir).completed == [0]
    assert not (buf_dir / expert_filename(1)).exists()  # a half-trained expert is never written
    before = (buf_dir / expert_filename(0)).read_bytes()
    mtime = (buf_dir / expert_filename(0)).stat().st_mtime_ns

    second = make_experts(buf_dir, scheduler=False)
    trainer = make_trainer(6, tmp_path)
    trainer.fit(second, datamodule=TinyDigits())
    assert second.todo == [1]
    assert trainer.current_epoch == 3  # only expert 1's three epochs ran
    buf = ExpertBuffer(buf_dir)
    assert buf.completed == [0, 1]
    assert (buf_dir / expert_filename(0)).read_bytes() == before
    assert (buf_dir / expert_filename(0)).stat().st_mtime_ns == mtime

    # Expert 1 is the same as in a run that never stopped.
    fresh = tmp_path / "fresh"
    make_trainer(6, tmp_path).fit(
        make_experts(fresh, num_experts=2, scheduler=False), datamodule=TinyDigits()
    )
    assert torch.equal(ExpertBuffer(fresh).load_expert(1), buf.load_expert(1))

    # A third run has nothing left to do and leaves the buffer alone.
    third = make_experts(buf_dir, num_experts=2, scheduler=False)
    make_trainer(6, tmp_path).fit(third, datamodule=TinyDigits())
    assert third.todo == [] and ExpertBuffer(buf_dir).completed == [0, 1]


def test_mismatched_recipe_is_refused(tmp_path):
    buf_dir = tmp_path / "buf"
    make_trainer(3, tmp_path).fit(
        make_experts(buf_dir, num_experts=1, scheduler=False), datamodule=TinyDigits()
    )
    with pytest.raises(ValueError, match="lr"):
        make_trainer(6, tmp_path).fit(
            make_experts(buf_dir, num_experts=2, scheduler=False, lr=0.1), datamodule=TinyDigits()
        )


def test_max_epochs_must_cover_the_plan(tmp_path):
    with pytest.raises(ValueError, match="stops itself after 6"):
        make_trainer(5, tmp_path).fit(
            make_experts(tmp_path / "buf", scheduler=False), datamodule=TinyDigits()
        )


def test_el2n_matches_hand_computation():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 0, 1])
    # softmax [.5,.5] vs [1,0]; [.75,.25] vs [1,0]; [.75,.25] vs [0,1]
    want = torch.tensor([math.sqrt(0.5), math.sqrt(2 * 0.25**2), math.sqrt(2 * 0.75**2)])
    torch.testing.assert_close(el2n(logits, labels), want)

    def constant(bias):  # a linear model whose logits ignore the input
        lin = nn.Linear(4, 2)
        nn.init.zeros_(lin.weight)
        with torch.no_grad():
            lin.bias.copy_(torch.tensor(bias))
        return nn.Sequential(nn.Flatten(), lin)

    nets = [constant([0.0, 0.0]), constant([math.log(3.0), 0.0])]
    images = torch.randint(0, 255, (5, 1, 2, 2), dtype=torch.uint8)
    ys = torch.tensor([0, 1, 0, 1, 0])
    got = el2n_scores(nets, images, ys, Normalizer(torch.tensor([0.5]), torch.tensor([0.25])), batch_size=2)
    per_label = {0: (math.sqrt(0.5) + math.sqrt(0.125)) / 2, 1: (math.sqrt(0.5) + math.sqrt(1.125)) / 2}
    torch.testing.assert_close(got, torch.tensor([per_label[int(y)] for y in ys]))


def test_fiex_schedule_grows_then_drops_easy_samples():
    scores = torch.arange(20, dtype=torch.float32).flip(0)  # sample 19 is the easiest
    fiex = FIEX(
        init_ratio=0.5,
        add_end_epoch=4,
        rm_epoch_first=6,
        rm_epoch_second=8,
        rm_easy_ratio_first=0.1,
        rm_easy_ratio_second=0.25,
    )
    sizes = [len(fiex_schedule(scores, e, fiex=fiex)) for e in range(10)]
    # 50% -> 100% linearly over epochs 0..4, all until 6, minus the easiest 10% until 8, then 25%.
    assert sizes == [10, 12, 15, 17, 20, 20, 20, 18, 18, 15]
    assert fiex_schedule(scores, 0, fiex=fiex).tolist() == list(range(10, 20))  # the easiest half
    assert fiex_schedule(scores, 9, fiex=fiex).tolist() == list(range(15))  # the hardest 75%
    active = fiex_schedule(scores, 1, fiex=fiex)
    assert scores[active].max() < scores[~torch.isin(torch.arange(20), active)].min()

    # Per class: every class keeps its own easiest fraction, so the class balance is unchanged.
    labels = torch.tensor([0] * 10 + [1] * 10)
    idx = fiex_schedule(torch.rand(20), 0, labels, fiex)
    assert torch.bincount(labels[idx]).tolist() == [5, 5]
    idx = fiex_schedule(torch.rand(20), 9, labels, fiex)
    assert torch.bincount(labels[idx]).tolist() == [8, 8]


def test_fiex_is_checked_when_built():
    with pytest.raises(ValueError, match="init_ratio"):
        FIEX(init_ratio=0.0)
    with pytest.raises(ValueError, match="rm_easy_ratio_second"):
        FIEX(rm_easy_ratio_second=1.0)
    assert fiex_phase(0, FIEX(add_end_epoch=0)) == (1.0, 0.0)  # no growth phase: everything at once
    assert fiex_phase(20) == (1.0, 0.0) and fiex_phase(41) == (1.0, 0.1) and fiex_phase(61) == (1.0, 0.2)


def test_config_nests_the_curriculum(tmp_path, monkeypatch):
    """``fiex`` is one mapping in YAML and on the command line, parsed into the FIEX dataclass."""
    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        str(ROOT / "configs" / "mnist" / "experts.yaml"),
        "--model.init_args.fiex.init_ratio",
        "0.5",
    ]
    model = DDLightCLI(args=args, run=False).model
    assert isinstance(model, Experts)
    assert model.fiex == FIEX(0.5, add_end_epoch=1, rm_epoch_first=2, rm_epoch_second=3)


def test_cli_writes_the_buffer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(ROOT / "configs" / "mnist" / "experts.yaml"),
            *TINY_DIGITS_NET,
            "--model.init_args.num_experts",
            "1",
            "--model.init_args.epochs",
            "2",
            "--model.init_args.el2n_models",
            "1",
            "--model.init_args.el2n_epochs",
            "1",
            "--model.init_args.buffer_dir",
            "buf",
            "--trainer.limit_train_batches",
            "2",
            *QUIET,
        ],
    )
    buf = ExpertBuffer(tmp_path / "buf")
    assert buf.completed == [0] and buf.load_expert(0).shape[0] == 3
    assert buf.manifest["net"]["class_path"] == "ddlight.models.ConvNet"
    assert buf.manifest["net"]["init_args"]["width"] == 8
    assert (
        buf.manifest["dataset"]["name"] == "tinydigits"
    )  # dataset_name(): the same identity synthetic sets record
    assert cli.trainer.current_epoch == 2
