import json

import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.evaluation import Recipe, Runs, SyntheticEvaluator
from ddlight.evaluation.recipe import lr_factor
from ddlight.models import MLP, ConvNet, use_lean_graph
from ddlight.ops.losses import soft_or_hard_ce
from ddlight.ops.metrics import accuracy
from tests.helpers import ROOT
from tests.helpers.builders import bundled_set
from tests.helpers.cli_args import QUIET


def test_lr_schedules():
    assert lr_factor("step", 0, 300) == 1.0 and lr_factor("step", 149, 300) == 1.0
    assert lr_factor("step", 150, 300) == pytest.approx(0.1)
    assert lr_factor("step", 0, 1) == 1.0 and lr_factor("step", 1, 2) == pytest.approx(0.1)
    assert lr_factor("cosine", 0, 50) == 1.0
    assert lr_factor("cosine", 25, 50) == pytest.approx(0.5)
    assert lr_factor("none", 40, 50) == 1.0


def test_soft_labels_reduce_to_hard_labels():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    sharp = torch.nn.functional.one_hot(y, 4).float() * 1e4
    torch.testing.assert_close(soft_or_hard_ce(logits, sharp), soft_or_hard_ce(logits, y))


def test_runs_train_every_run_and_report():
    syn, dm = bundled_set()
    ev = Runs(use_lean_graph(ConvNet(width=16), twice_differentiated=True), Recipe(num_runs=3, epochs=4))
    # a distiller's lean template, but the runs train first-order: ATen's ReLU and pooling backward
    assert {m.lean for n in ev.nets for m in n.modules() if hasattr(m, "lean")} == {False}
    init = [[p.detach().clone() for p in n.parameters()] for n in ev.nets]
    template = [p.detach().clone() for p in ev.net.parameters()]
    # runs start from different initialisations
    assert not torch.equal(init[0][0], init[1][0])
    res = ev.fit(syn.images, syn.labels, dm.test_dataloader(), "mnist")
    for before, net in zip(init, ev.nets, strict=True):
        assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    # the template itself is never trained
    assert all(torch.equal(a, b) for a, b in zip(template, ev.net.parameters(), strict=True))
    assert len(res["accuracies"]) == 3 and 0.0 <= res["mean"] <= 1.0
    assert res["mean"] == pytest.approx(sum(res["accuracies"]) / 3)
    # accuracy() is the plain fraction correct on the real test set
    again = accuracy(ev.nets, dm.test_dataloader())
    assert [float(a) for a in again] == res["accuracies"]


def test_training_on_real_digits_beats_chance(tmp_path):
    syn, dm = bundled_set(ipc=10)
    ev = Runs(ConvNet(width=32), Recipe(num_runs=1, epochs=30, dsa=False))
    res = ev.fit(syn.images, syn.labels, dm.test_dataloader(), "mnist", batch_size=100)
    assert res["mean"] > 0.5


def test_only_long_evaluations_train_compiled(caplog):
    # runs x epochs x images decides: a set evaluated as the protocol does (5 x 300 x 100 images) repays
    # the compile; the tests' and the quick checks' few epochs stay eager
    syn, _ = bundled_set()
    n = syn.images.shape[0]
    said = "[ddlight] evaluation: training compiled on a CPU"
    short = Runs(ConvNet(width=8), Recipe(num_runs=2, epochs=3))
    with caplog.at_level("INFO"):
        short.prepare("mnist", labels=syn.labels, searched_lr=0.01)
        assert not short.plan_compile(n) and {net.compile_training for net in short.nets} == {False}
        assert said not in caplog.text
        protocol = Runs(ConvNet(width=8), Recipe(num_runs=5, epochs=300))
        protocol.prepare("mnist", labels=torch.arange(100) % 10, searched_lr=0.01)
        assert caplog.text.count(said) == 1  # the first step's pause has a reason
    assert {net.compile_training for net in protocol.nets} == {True}
    assert not protocol.plan_compile(1)  # 1,500 images
    eager = Runs(ConvNet(width=8, compile=False), Recipe(num_runs=5, epochs=300))
    with caplog.at_level("INFO"):
        eager.prepare("mnist", labels=torch.arange(100) % 10, searched_lr=0.01)
    assert caplog.text.count(said) == 1  # not said again for a network that stays eager
    # marked, but a network the user set eager never compiles (ConvNet's "auto" decides)
    assert all(not net._compiled_now(syn.images.float()) for net in eager.nets)


@pytest.mark.slow  # compiles a forward and its backward
def test_compiled_runs_train_as_eager_ones_do(monkeypatch):
    syn, dm = bundled_set(ipc=2)
    results = []
    for compiled in (False, True):
        monkeypatch.setattr(Runs, "compile_from_images", 1 if compiled else 10**12)
        ev = Runs(ConvNet(width=16), Recipe(num_runs=2, epochs=10))
        res = ev.fit(syn.images, syn.labels, dm.test_dataloader(), "mnist")
        assert {net.compile_training for net in ev.nets} == {compiled}
        results.append(res)
    # inductor's fused backward rounds differently (docs/performance.md): the same training, to noise
    for a, b in zip(results[0]["train_loss_last_epoch"], results[1]["train_loss_last_epoch"], strict=True):
        assert a == pytest.approx(b, rel=1e-2)
    assert results[0]["mean"] == pytest.approx(results[1]["mean"], abs=0.03)


@pytest.mark.slow
def test_runs_bf16_autocast_trains_and_refuses_unknown_precision():
    syn, dm = bundled_set(ipc=10)
    # width 16: 30 bf16 epochs reach ~73 % in ~5 s on the 2-core CPU (width 32: 77 % in ~13 s)
    ev = Runs(ConvNet(width=16), Recipe(num_runs=1, epochs=30, dsa=False))
    res = ev.fit(syn.images, syn.labels, dm.test_dataloader(), "mnist", 100, "bf16-mixed")
    # parameters stay fp32 (autocast only lowers the matmuls/convs) and the runs still learn
    assert all(p.dtype == torch.float32 for p in ev.nets.parameters())
    assert res["mean"] > 0.5
    with pytest.raises(ValueError, match="precision must be"):
        ev.fit(syn.images, syn.labels, dm.test_dataloader(), "mnist", precision="16-mixed")


def evaluate_args(path, tmp_path, epochs: int, runs: int, *extra: str) -> list[str]:
    """configs/mnist/evaluate.yaml on a saved set, against the bundled digits, shrunk for a test."""
    return [
        "fit",
        "--config",
        str(ROOT / "configs" / "mnist" / "evaluate.yaml"),
        "--data.init_args.path",
        str(path),
        "--data.init_args.real.init_args.source",
        "bundled",
        "--model.init_args.epochs",
        str(epochs),
        "--model.init_args.num_runs",
        str(runs),
        "--model.init_args.results_path",
        str(tmp_path / "res.json"),
        *QUIET,
        *extra,
    ]


def test_cli_fit_writes_results(tmp_path):
    syn, _ = bundled_set()
    path = syn.save(tmp_path / "synthetic.pt")
    cli = DDLightCLI(args=evaluate_args(path, tmp_path, 2, 2, "--model.init_args.net", "ddlight.models.MLP"))
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["architecture"] == "MLP" and len(res["accuracies"]) == 2
    # trainer.max_epochs left unset (Lightning's 1000): the evaluator stops itself after `epochs`.
    assert cli.trainer.current_epoch == 2 and res["epochs"] == 2


def test_results_record_which_labels_the_runs_trained_on(tmp_path):
    syn, _ = bundled_set()
    hard = syn.labels.clone()
    syn.labels = torch.nn.functional.one_hot(hard, 10).float() * 4  # soft logits naming the same classes
    path = syn.save(tmp_path / "synthetic.pt")
    small = ("--model.init_args.net.init_args.width", "8")
    for labels, want in (("saved", "soft"), ("hard", "hard")):
        cli = DDLightCLI(args=evaluate_args(path, tmp_path, 1, 1, *small, "--data.init_args.labels", labels))
        assert json.loads((tmp_path / "res.json").read_text())["labels"] == want
        assert torch.equal(cli.datamodule.synthetic.labels, syn.labels if labels == "saved" else hard)


def test_epoch_mismatch_is_an_error(tmp_path):
    syn, _ = bundled_set()
    path = syn.save(tmp_path / "synthetic.pt")
    with pytest.raises(
        ValueError, match="max_epochs=2 would cut the lr schedule of model.init_args.epochs=3"
    ):
        DDLightCLI(args=evaluate_args(path, tmp_path, 3, 2, "--trainer.max_epochs", "2"))


def test_bad_schedule():
    with pytest.raises(ValueError, match="schedule must be one of"):
        SyntheticEvaluator(MLP(), schedule="linear")


def test_learned_lr_trains_exactly_as_the_sets_rate_would():
    syn, _ = bundled_set()
    extra = {"syn_lr": 0.037}

    def trained(lr):
        ev = Runs(ConvNet(width=8), Recipe(num_runs=1, epochs=2, lr=lr, schedule="none", dsa=False))
        res = ev.fit(syn.images, syn.labels, [], "mnist", extra=extra)
        return res, [p.detach() for p in ev.nets.parameters()]

    res, learned = trained("learned")
    assert res["lr"] == 0.037 and res["lr_source"] == "learned syn_lr"
    _, explicit = trained(0.037)
    _, default = trained(0.01)
    assert all(torch.equal(a, b) for a, b in zip(learned, explicit, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(learned, default, strict=True))


def test_learned_lr_refuses_a_set_without_one(tmp_path):
    with pytest.raises(ValueError, match="lr must be a number, 'learned' or 'search'"):
        SyntheticEvaluator(MLP(), lr="learnt")
    syn, _ = bundled_set()
    ev = Runs(ConvNet(width=8), Recipe(num_runs=1, epochs=1, lr="learned"))
    with pytest.raises(ValueError, match=r"extra\['syn_lr'\].*got None"):
        ev.fit(syn.images, syn.labels, [], "mnist")
    path = syn.save(tmp_path / "synthetic.pt")
    learned = ("--model.init_args.lr", "learned", "--model.init_args.net.init_args.width", "8")
    args = evaluate_args(path, tmp_path, 1, 1, *learned)
    with pytest.raises(ValueError, match=f"syn_lr.*{path}"):
        DDLightCLI(args=args)
    # the same command on a set that stores a learned rate trains at that rate
    syn.extra = {"syn_lr": 0.02}
    syn.save(path)
    DDLightCLI(args=args)
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["lr"] == 0.02 and res["lr_source"] == "learned syn_lr"


def test_runs_whose_loss_does_not_fall_are_flagged(tmp_path):
    syn, dm = bundled_set(ipc=2)
    learns = Runs(ConvNet(width=16), Recipe(num_runs=2, epochs=20, dsa=False))
    res = learns.fit(syn.images, syn.labels, [], "mnist")
    assert res["runs_not_learning"] == []
    assert all(
        a > b + 0.5 for a, b in zip(res["train_loss_first_epoch"], res["train_loss_last_epoch"], strict=True)
    )
    # lr 0: the networks never move, as an architecture the recipe cannot train (AlexNet at 0.01) barely does
    stuck = Runs(ConvNet(width=16), Recipe(num_runs=2, epochs=3, dsa=False, lr=0.0))
    with pytest.warns(UserWarning, match=r"2 of 2 ConvNet run\(s\) did not learn"):
        res = stuck.fit(syn.images, syn.labels, [], "mnist")
    assert res["runs_not_learning"] == [0, 1]
    torch.testing.assert_close(
        torch.tensor(res["train_loss_first_epoch"]), torch.tensor(res["train_loss_last_epoch"])
    )


def test_loss_floor_of_soft_labels_is_their_entropy():
    from ddlight.ops.losses import label_entropy

    assert label_entropy(torch.tensor([0, 1])) == 0.0
    uniform = torch.zeros(3, 4)  # logits of a uniform distribution over 4 classes
    assert label_entropy(uniform) == pytest.approx(float(torch.log(torch.tensor(4.0))))
