"""The reproduction report: lossless-IPC search, DC-Bench export/protocol, stage cache, and a tiny
end-to-end report whose every printed number is checked against the files the stages wrote."""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import pytest
import torch

from ddlight.cli import DDLightCLI
from ddlight.data import SyntheticSet
from ddlight.report import dcbench
from ddlight.report.ipc_search import Target, search_lossless_ipc
from ddlight.report.runner import MARKER, Runner, Stage, flags
from ddlight.report.tables import format_seconds
from tests.helpers import ROOT

CONFIG = ROOT / "configs" / "report_mnist.yaml"


# ------------------------------------------------------------------------------------ lossless IPC
def counting(curve):
    calls: list[int] = []

    def evaluate(ipc: int) -> float:
        calls.append(ipc)
        return curve(ipc)

    return evaluate, calls


@pytest.mark.parametrize(
    "answer, probes",
    [
        (1, [1]),
        (2, [1, 2]),
        (3, [1, 2, 4, 3]),
        (11, [1, 2, 4, 8, 16, 12, 10, 11]),
        (16, [1, 2, 4, 8, 16, 12, 14, 15]),
        (17, [1, 2, 4, 8, 16, 32, 24, 20, 18, 17]),
        (100, [1, 2, 4, 8, 16, 32, 64, 128, 96, 112, 104, 100, 98, 99]),
    ],
)
def test_search_doubles_then_bisects(answer, probes):
    # A monotone step at `answer`, and a smooth saturating curve crossing the threshold there.
    evaluate, calls = counting(lambda ipc: 0.9 if ipc >= answer else 0.5)
    res = search_lossless_ipc(evaluate, threshold=0.8)
    assert res.ipc == answer
    assert calls == probes and res.evaluations == len(probes)
    assert [i for i, _ in res.probes] == probes
    # doubling probes + bisection probes = 2 * ceil(log2(answer)) for answer > 1
    assert res.evaluations == (1 if answer == 1 else 2 * math.ceil(math.log2(answer)))


def test_search_on_saturating_curve_and_target_relative_to_full_data():
    full = 0.99
    curve = lambda ipc: full * (1 - math.exp(-ipc / 12))  # noqa: E731
    target = Target(within=0.01, full_accuracy=full)
    evaluate, calls = counting(curve)
    res = search_lossless_ipc(evaluate, target.threshold)
    want = next(i for i in range(1, 1000) if curve(i) >= target.threshold)
    assert res.ipc == want == 56
    assert calls == [1, 2, 4, 8, 16, 32, 64, 48, 56, 52, 54, 55]
    assert curve(want - 1) < target.threshold <= curve(want)


def test_search_respects_max_ipc_and_start():
    evaluate, calls = counting(lambda ipc: ipc / 100)
    res = search_lossless_ipc(evaluate, threshold=0.5, max_ipc=40)
    assert res.ipc is None and calls == [1, 2, 4, 8, 16, 32, 40]
    evaluate, calls = counting(lambda ipc: ipc / 100)
    res = search_lossless_ipc(evaluate, threshold=0.3, start=10, max_ipc=40)
    assert res.ipc == 30 and calls == [10, 20, 40, 30, 25, 27, 28, 29]
    # the first probe meeting the target ends the search: nothing below `start` is tried
    evaluate, calls = counting(lambda ipc: 1.0)
    assert search_lossless_ipc(evaluate, 0.5, start=10).ipc == 10 and calls == [10]


def test_target_validation():
    assert Target(accuracy=0.95).threshold == 0.95
    assert Target(within=0.02, full_accuracy=0.99).threshold == pytest.approx(0.97)
    with pytest.raises(ValueError):
        Target()
    with pytest.raises(ValueError):
        Target(within=0.01)


# -------------------------------------------------------------------------------------- DC-Bench
def dcbench_loader(root: Path, method: str, dataset: str, ipc: int):
    """DC-Bench's DCDataLoader.load_data + get_data_file_name, re-implemented from its source."""
    data_file = "res_%s_%s_ConvNet_%dipc.pt" % (method.upper(), dataset, ipc)  # noqa: UP031 (DC-Bench's own)
    data_path = root / method / dataset / ("IPC" + str(ipc)) / data_file
    dc_data = torch.load(data_path, weights_only=True)
    training_data = dc_data["data"]
    train_images, train_labels = training_data[-1]
    return train_images, train_labels


def make_set(soft: bool) -> SyntheticSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(3)
    return SyntheticSet(
        images=torch.randn(30, 1, 28, 28, generator=g),
        labels=torch.randn(30, 10, generator=g) + 5 * torch.nn.functional.one_hot(labels, 10)
        if soft
        else labels,
        mean=(0.1307,),
        std=(0.3081,),
        num_classes=10,
        method="pad" if soft else "datadam",
        dataset="mnist",
        ipc=3,
    )


@pytest.mark.parametrize("soft", [False, True])
def test_dcbench_export_loads_with_dcbench_conventions(tmp_path, soft):
    syn = make_set(soft)
    path = syn.save(tmp_path / "synthetic.pt")
    out = dcbench.main([str(path), str(tmp_path / "distilled_results")])
    method = "PAD" if soft else "DATADAM"
    assert (
        out
        == tmp_path / "distilled_results" / method / "MNIST" / "IPC3" / f"res_{method}_MNIST_ConvNet_3ipc.pt"
    )
    images, labels = dcbench_loader(tmp_path / "distilled_results", method, "MNIST", 3)
    assert images.dtype == torch.float32 and images.shape == (30, 1, 28, 28)
    torch.testing.assert_close(images, syn.images)  # normalised space, as DC/DSA/DM store their sets
    if soft:
        # DC-Bench's CrossEntropyLoss takes float rows as probabilities; its accuracy argmaxes them
        assert labels.dtype == torch.float32 and labels.shape == (30, 10)
        torch.testing.assert_close(labels.sum(1), torch.ones(30))
        assert torch.equal(labels.argmax(1), syn.hard_labels)
        logits = torch.randn(30, 10)
        torch.testing.assert_close(
            torch.nn.functional.cross_entropy(logits, labels),
            -(torch.softmax(syn.labels, 1) * torch.log_softmax(logits, 1)).sum(1).mean(),
        )
    else:
        assert labels.dtype == torch.int64 and torch.equal(labels, syn.labels)
    readme = (tmp_path / "distilled_results" / "README.md").read_text()
    assert f"--method {method.lower()} --dataset MNIST --ipc 3" in readme


def test_dcbench_preset_config_is_dcbench_protocol():
    # The parsed config (code defaults filled in), not the YAML: the config says only what differs.
    cli = DDLightCLI(args=["--config", str(ROOT / "configs" / "mnist" / "evaluate_dcbench.yaml")], run=False)
    p, model = dcbench.PROTOCOL, cli.config.model.init_args
    for key in ("num_runs", "epochs", "lr", "momentum", "weight_decay", "schedule", "dsa", "dsa_strategy"):
        assert model[key] == p[key], key
    assert cli.config.trainer.max_epochs is None  # unset: the evaluator stops itself after `epochs`
    assert cli.config.data.init_args.batch_size == p["batch_size"]
    assert cli.model.net.num_classes == 10  # linked from the data
    assert {k: model.net.init_args[k] for k in p["net"]} == p["net"]


# ---------------------------------------------------------------------------------------- runner
def test_stage_hash_covers_config_text_flags_and_upstream(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("x: 1\n")
    up = Stage("up", "distill", str(cfg), ("--a", "1"))
    down = Stage("down", "eval", str(cfg), ("--p", "x"), (up,))
    d0 = down.digest
    assert Stage("down", "eval", str(cfg), ("--p", "x"), (up,)).digest == d0
    assert Stage("down", "eval", str(cfg), ("--p", "y"), (up,)).digest != d0
    assert (
        Stage(
            "down", "eval", str(cfg), ("--p", "x"), (Stage("up", "distill", str(cfg), ("--a", "2")),)
        ).digest
        != d0
    )
    cfg.write_text("x: 2\n")
    assert down.digest != d0
    assert flags({"a.b": None, "c": True, "d": {"k": 1}, "e": 0.5}) == [
        "--a.b", "null", "--c", "true", "--d", '{"k": 1}', "--e", "0.5",
    ]  # fmt: skip


def test_runner_skips_finished_and_wipes_interrupted(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(Runner, "_execute", lambda self, stage, out: calls.append(stage.name) or ["cmd"])
    stage = Stage("s", "dcbench_export", None, ("a",))
    runner = Runner(tmp_path, log=lambda s: None)
    rec = runner.run(stage)
    assert (
        rec.executed and calls == ["s"] and json.loads((rec.dir / MARKER).read_text())["hash"] == stage.digest
    )
    assert not Runner(tmp_path, log=lambda s: None).run(stage).executed and calls == ["s"]
    # an attempt that died before its marker is wiped and run again
    (rec.dir / MARKER).unlink()
    (rec.dir / "partial.txt").write_text("half")
    again = Runner(tmp_path, log=lambda s: None).run(stage)
    assert again.executed and calls == ["s", "s"] and not (rec.dir / "partial.txt").exists()


@pytest.mark.slow
def test_runner_subprocess_mode_records_the_command(tmp_path):
    path = make_set(soft=False).save(tmp_path / "synthetic.pt")
    rec = Runner(tmp_path / "art", subprocess=True, log=lambda s: None).run(
        Stage("export", "dcbench_export", None, (str(path),))
    )
    assert rec.commands == [f"python -m ddlight.report.dcbench {path} {rec.dir / 'distilled_results'}"]
    images, labels = dcbench_loader(rec.dir / "distilled_results", "DATADAM", "MNIST", 3)
    assert torch.equal(labels, torch.arange(10).repeat_interleave(3))
    assert "$ python -m ddlight.report.dcbench" in (rec.dir / "log.txt").read_text()


def test_methods_section_budget_keys_are_checked(tmp_path):
    import yaml

    from ddlight.report.compare import comparison
    from ddlight.report.study import budget_for

    spec = yaml.safe_load(CONFIG.read_text())
    mnist = spec["datasets"]["mnist"]
    cmp = comparison(mnist, budget_for(spec, "tiny", "mnist"))
    rows = [(r.method, r.ipc, r.set) for r in cmp.rows]
    assert rows == [(m, 1, f"compare-{m}-real-ipc1") for m in ("dc", "pad")]
    assert cmp.learned_labels == ("datm", "pad") and cmp.published["dc"] == {1: 0.917, 10: 0.974, 50: 0.988}
    with pytest.raises(ValueError, match=r"compare_methods names \['kip'\]"):
        comparison(mnist, {"compare_methods": ["dc", "kip"]})
    spec["budgets"]["tiny"]["mnist"]["compare_kip"] = {"trainer.max_steps": 1}
    with pytest.raises(ValueError, match="unknown key 'compare_kip'"):
        budget_for(spec, "tiny", "mnist")


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["small", "paper"])
def test_every_budget_command_parses(budget, monkeypatch):
    """The budgets no test runs: each of their stage commands must at least parse and instantiate."""
    from ddlight.report.build import check_report

    monkeypatch.chdir(ROOT)  # stage configs are repository-relative, as in every ddlight command
    assert check_report(CONFIG, budget) >= 30


# ------------------------------------------------------------------------------------ end to end
def write_idx(path: Path, data: torch.Tensor) -> None:
    """torchvision's raw MNIST format: big-endian magic (0x0803 images / 0x0801 labels), dims, bytes."""
    dims = tuple(data.shape)
    magic = 0x0800 | len(dims)
    path.write_bytes(struct.pack(f">I{len(dims)}I", magic, *dims) + data.to(torch.uint8).numpy().tobytes())


@pytest.fixture(scope="module")
def mnist_subset(mnist_root, tmp_path_factory) -> Path:
    """The first 3,000 training and 500 test digits of the real MNIST, in torchvision's raw layout."""
    from torchvision.datasets import MNIST

    root = tmp_path_factory.mktemp("mnist_subset")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for train, n, prefix in ((True, 3000, "train"), (False, 500, "t10k")):
        ds = MNIST(str(mnist_root), train=train)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", ds.data[:n])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", ds.targets[:n])
    return root


@pytest.fixture(scope="module")
def tiny_report(mnist_subset, tmp_path_factory):
    from ddlight.report.__main__ import main
    from tests.helpers.mhist import make_mhist_fixture

    base = tmp_path_factory.mktemp("report")
    mhist = make_mhist_fixture(base / "mhist", n_train=8, n_test=4, size=224)
    args = [
        "--config",
        str(CONFIG),
        "--budget",
        "tiny",
        "--data-dir",
        f"mnist={mnist_subset}",
        "--artifacts-dir",
        str(base / "artifacts"),
        "--reports-dir",
        str(base / "reports"),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # stage configs are repository-relative, as in every ddlight command
        path = main([*args, "--data-dir", f"mhist={mhist}"])
    return base, args, path


SECTIONS = (
    "## Table I",
    "## Table III (MNIST)",
    "## Table IV (MHIST)",
    "## Table V (MNIST)",
    "## Table VI (MNIST)",
    "## Table VII (MNIST)",
    "## Methods (MNIST)",
    "## Lossless IPC search (MNIST)",
    "## Figures",
    "## Commands",
)
FIGURES = ("grids", "loss", "acc_vs_ipc", "acc_vs_time")


def section_of(text: str, name: str) -> str:
    """The report text from the heading that starts with ``name`` to the next heading."""
    start = next(m.start() for m in re.finditer(r"^## .*$", text, re.M) if m.group().startswith(f"## {name}"))
    nxt = re.search(r"^## ", text[start + 3 :], re.M)
    return text[start : start + 3 + nxt.start()] if nxt else text[start:]


def read_source(file: str, key: str) -> float:
    """Independent re-read of a number's source: a TensorBoard tag, a results.json key, or set metadata."""
    p = Path(file)
    if p.is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(p))
        acc.Reload()
        return acc.Scalars(key)[-1].value
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        for part in key.split("."):  # dotted keys with list indices, e.g. completed.0.test_acc
            data = data[int(part)] if isinstance(data, list) else data[part]
        return data
    if key == "iteration":
        return SyntheticSet.load(p).iteration
    assert key == "extra.distill_seconds"
    return SyntheticSet.load(p).extra["distill_seconds"]


@pytest.mark.slow
def test_tiny_report_has_every_table_and_figure(tiny_report):
    base, _, path = tiny_report
    text = path.read_text()
    assert path.parent == base / "reports" / "mnist_tiny"
    for heading in SECTIONS:
        assert heading in text, heading
    assert "skipped" not in text
    for ds in ("mnist", "mhist"):
        for fig in FIGURES:
            if ds == "mhist" and fig == "acc_vs_ipc":  # MHIST has no IPC sweep nor search
                assert "nothing to plot for MHIST" in text
                continue
            png = path.parent / f"{fig}_{ds}.png"
            assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
            assert f"]({png.name})" in text
    # setup and provenance
    for needle in ("CPU:", "torch ", "lightning ", "seed_everything: 0", "Wall time of this invocation"):
        assert needle in text
    assert "python -m ddlight fit --config" in text and "python -m ddlight test --config" in text
    assert "python -m ddlight.report.dcbench" in text
    export = dcbench_loader(
        next((base / "artifacts").glob("mnist-datadam-real-ipc10-dcbench-export-*")) / "distilled_results",
        "DATADAM",
        "MNIST",
        10,
    )
    assert export[0].shape == (100, 1, 28, 28) and export[1].dtype == torch.int64


@pytest.mark.slow
def test_tiny_report_numbers_come_from_stage_outputs(tiny_report):
    base, _, path = tiny_report
    text = path.read_text()
    ledger = json.loads((path.parent / "report.json").read_text())["numbers"]
    assert len(ledger) > 40
    sections = {e["section"] for e in ledger}
    assert {
        "Table I",
        "Table III (MNIST)",
        "Table IV (MHIST)",
        "Table V (MNIST)",
        "Table VI (MNIST)",
        "Table VII (MNIST)",
        "Methods (MNIST)",
        "Lossless IPC search (MNIST)",
    } <= sections
    for e in ledger:
        values = [read_source(s["file"], s["key"]) for s in e["sources"]]
        assert values == pytest.approx([s["value"] for s in e["sources"]], rel=1e-6), e
        expect = {None: lambda v: v[0], "2 * a": lambda v: 2 * v[0], "a / b": lambda v: v[0] / v[1]}
        assert e["value"] == pytest.approx(expect[e["formula"]](values), rel=1e-6), e
        assert e["text"] in section_of(text, e["section"]), e

    # Spot checks straight from the artefacts, without report.json.
    art = base / "artifacts"
    baseline = next(art.glob("mnist-baseline-ConvNet-3-*"))
    acc = read_source(str(baseline / "tb" / "test"), "test/acc")
    macs = read_source(str(baseline / "tb" / "fit"), "model/macs_fvcore")
    row = next(line for line in section_of(text, "Table I").splitlines() if line.startswith("| MNIST |"))
    assert (
        f"| {100 * acc:.2f} |" in row
        and f"| {macs / 1e6:.2f}M |" in row
        and f"| {2 * macs / 1e6:.2f}M |" in row
    )
    for results in art.glob("mnist-*-eval-*-study-*/results.json"):
        r = json.loads(results.read_text())
        assert f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}" in text, results
    dcb = json.loads(
        next(art.glob("mnist-datadam-real-ipc10-eval-ConvNet-3-dcbench-*/results.json")).read_text()
    )
    row = next(
        line for line in section_of(text, "Table V").splitlines() if line.startswith("| DC-Bench protocol")
    )
    assert f"{100 * dcb['mean']:.2f} ± {100 * dcb['std']:.2f}" in row and f"| {dcb['epochs']} |" in row
    pad100 = SyntheticSet.load(next(art.glob("mnist-pad-real-ipc100-*/synthetic.pt")))
    row = next(
        line for line in section_of(text, "Table VII").splitlines() if line.startswith("| PAD IPC 100 |")
    )
    assert format_seconds(pad100.extra["distill_seconds"]) in row and "| 1000 |" in row
    # the search ran with a target every IPC meets: one probe, IPC 1
    assert "Smallest IPC meeting the target: 1**" in section_of(text, "Lossless IPC search")


@pytest.mark.slow
def test_rerun_reuses_every_stage_and_skips_missing_mhist(tiny_report, monkeypatch):
    from ddlight.report.__main__ import main

    base, args, _ = tiny_report

    def fail(self, stage, out):
        raise AssertionError(f"stage {stage.name} re-executed")

    monkeypatch.setattr(Runner, "_execute", fail)
    monkeypatch.chdir(ROOT)
    path = main([*args, "--data-dir", f"mhist={base / 'no_mhist_here'}", "--name", "rerun"])
    text = path.read_text()
    assert "MHIST: skipped - " in text and "annotations.csv not found" in text
    assert "## Table IV" not in text and "## Table III (MNIST)" in text
    report = json.loads((path.parent / "report.json").read_text())
    assert report["stages"] and not any(s["executed"] for s in report["stages"])
    assert "it ran 0 stage(s)" in text


@pytest.mark.parametrize(
    ("kind", "config", "arg", "where"),
    [
        ("distill", "mnist/datadam.yaml", "export_dir", ""),
        ("eval", "mnist/evaluate.yaml", "results_path", "results.json"),
        ("experts", "mnist/experts.yaml", "buffer_dir", "buffer"),
    ],
)
def test_stage_outputs_go_through_the_module_declared_arg(kind, config, arg, where, tmp_path):
    """The runner names no init arg itself: the module class's OUTPUT_ARG says where a stage writes."""
    stage = Stage("s", kind, str(ROOT / "configs" / config))
    f = Runner.output_flags(stage, tmp_path)
    assert f[f.index(f"--model.init_args.{arg}") + 1] == str(tmp_path / where if where else tmp_path)


@pytest.mark.slow
def test_tiny_report_on_cifar10_evaluates_each_method_on_its_own_data(tmp_path, monkeypatch):
    """configs/report_cifar10.yaml on generated files in CIFAR-10's layout: the report is not MNIST's
    alone, and PAD's ZCA-whitened sets are evaluated against whitened real data, DataDAM's against plain."""
    from ddlight.report.__main__ import main
    from tests.helpers.datasets import write_cifar

    data = write_cifar(tmp_path / "data", 10, per_class_train=12, per_class_test=3)
    monkeypatch.chdir(ROOT)
    path = main(
        [
            *("--config", str(ROOT / "configs" / "report_cifar10.yaml"), "--budget", "tiny"),
            *("--data-dir", f"cifar10={data}", "--artifacts-dir", str(tmp_path / "art")),
            *("--reports-dir", str(tmp_path / "reports")),
        ]
    )
    text = path.read_text()
    for table in ("I", "III (CIFAR-10)", "VI (CIFAR-10)", "VII (CIFAR-10)"):
        assert f"## Table {table}" in text, table
    kinds = []
    for results in (tmp_path / "art").glob("cifar10-*-eval-*/results.json"):
        stage = json.loads((results.parent / MARKER).read_text())
        zca = "evaluate_zca.yaml" in stage["commands"][0]
        assert zca == ("-pad-" in results.parent.name), results.parent.name
        assert 0.0 <= json.loads(results.read_text())["mean"] <= 1.0
        kinds.append(zca)
    assert kinds.count(True) == 3 and kinds.count(False) == 2  # PAD real/noise/IPC 1; DataDAM real/noise


@pytest.mark.slow
def test_methods_only_report_has_the_methods_table_and_no_study_tables(mnist_subset, tmp_path, monkeypatch):
    """configs/report_methods_mnist.yaml has no `distill` block: its report is Table I (the full-data
    row the Methods section is read against) and the Methods table, with no empty Table III."""
    from ddlight.report.__main__ import main

    monkeypatch.chdir(ROOT)
    path = main(
        [
            *("--config", str(ROOT / "configs" / "report_methods_mnist.yaml"), "--budget", "tiny"),
            *("--data-dir", f"mnist={mnist_subset}", "--artifacts-dir", str(tmp_path / "art")),
            *("--reports-dir", str(tmp_path / "reports")),
        ]
    )
    text = path.read_text()
    assert "## Table I:" in text and "## Methods (MNIST)" in text
    assert "## Table III" not in text and "## Table VI" not in text
    methods = section_of(text, "Methods (MNIST)")
    for stage, title in (("dm", "DM"), ("mtt", "MTT")):
        r = json.loads(
            next((tmp_path / "art").glob(f"mnist-compare-{stage}-real-ipc1-eval-*/results.json")).read_text()
        )
        row = next(line for line in methods.splitlines() if line.startswith(f"| {title} | 1 |"))
        assert f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}" in row, row
