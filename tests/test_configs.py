"""Every shipped config parses (the check ``--print_config`` makes, without reading data), overlays on the
base their header names; and the DataDAM paper overlay changes exactly the values the authors' table and
their code disagree on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddlight.cli import module_class, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# overlay -> a base it is documented on (its header's command line)
OVERLAY_BASE = {
    "overlays/gpu.yaml": "mnist/datadam.yaml",
    "overlays/cpu_small.yaml": "mnist/datadam.yaml",
    "overlays/dsa_keep_flip.yaml": "mnist/evaluate.yaml",
    "overlays/datadam_paper.yaml": "cifar10/datadam_ipc10.yaml",
    "overlays/scores.yaml": "mnist/evaluate.yaml",
    "overlays/compile.yaml": "mnist/datadam_best.yaml",
    "overlays/compile_eval.yaml": "mnist/evaluate.yaml",
    "overlays/eager.yaml": "mnist/datadam.yaml",
    **{f"mnist/gpu/{p.name}": f"mnist/{p.name}" for p in (CONFIGS / "mnist" / "gpu").glob("*.yaml")},
}
OVERLAY_BASE["mnist/gpu/experts_mtt.yaml"] = "mnist/experts.yaml"


def _stages() -> list[str]:
    names = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))
    return [n for n in names if n not in OVERLAY_BASE and not n.startswith("report_")]


def _parse(*names: str):
    return parse_config([a for n in names for a in ("--config", str(CONFIGS / n))])


@pytest.mark.parametrize("name", _stages())
def test_every_stage_config_parses_to_a_method_and_a_data_module(name):
    cfg = _parse(name)
    assert module_class(cfg).__module__.startswith(("ddlight.methods", "ddlight.evaluation"))
    assert module_class(cfg, "data").__module__.startswith("ddlight.data")


@pytest.mark.parametrize(("overlay", "base"), sorted(OVERLAY_BASE.items()))
def test_every_overlay_parses_on_its_base(overlay, base):
    stage = module_class(_parse(base, overlay))
    assert stage.__module__.startswith(("ddlight.methods", "ddlight.evaluation"))


def test_the_default_compiles_long_runs_and_the_eager_overlay_switches_it_off():
    def compile_of(*names: str):
        return _parse(*names).model.init_args.net.init_args.compile

    assert compile_of("mnist/datadam.yaml") == "auto"
    assert compile_of("mnist/datadam.yaml", "overlays/eager.yaml") is False
    assert compile_of("mnist/datadam_best.yaml", "overlays/compile.yaml") == "no_grad"


def test_datadam_paper_overlay_switches_code_values_to_the_table():
    code = _parse("cifar10/datadam_ipc10.yaml")
    paper = _parse("cifar10/datadam_ipc10.yaml", "overlays/datadam_paper.yaml")
    code_hp, paper_hp = code.model.init_args, paper.model.init_args
    assert (code.trainer.max_steps, code_hp.power, code_hp.sam_weight, code_hp.embed_weight) == (
        20000,
        1.0,
        100.0,
        1.0,
    )
    assert (paper.trainer.max_steps, paper_hp.power, paper_hp.sam_weight, paper_hp.embed_weight) == (
        8000,
        4.0,
        1.0,
        0.01,
    )
    same = ("ipc", "lr_img", "momentum", "batch_real", "init", "dsa_strategy")
    assert {k: code_hp[k] for k in same} == {k: paper_hp[k] for k in same}


@pytest.mark.parametrize(
    ("base", "overlay", "value"),
    [
        ("mnist/datadam_best.yaml", "compile.yaml", "no_grad"),
        ("mnist/dm.yaml", "compile.yaml", "no_grad"),
        ("mnist/evaluate.yaml", "compile.yaml", "no_grad"),
        ("mnist/evaluate.yaml", "compile_eval.yaml", True),
        ("mnist/baseline.yaml", "compile_eval.yaml", True),
    ],
)
def test_compile_overlays_set_only_the_network_compile(base, overlay, value):
    plain, compiled = _parse(base), _parse(base, f"overlays/{overlay}")
    assert compiled.model.init_args.net.init_args.compile == value
    assert compiled.model.init_args.net.class_path == plain.model.init_args.net.class_path
    compiled.model.init_args.net.init_args.compile = plain.model.init_args.net.init_args.compile
    assert (compiled.model, compiled.data, compiled.trainer) == (plain.model, plain.data, plain.trainer)


# What each config's header claims of the seed study's tables, as parsed values (code defaults included).
DATADAM_MNIST = {
    "trainer.max_steps": 1000,  # Table II, MNIST: K = 100 random networks x T = 10 updates
    "model.init_args.steps_per_network": 10,
    "model.init_args.ipc": 10,
    "model.init_args.init": "real",
    "model.init_args.batch_real": 256,
    "model.init_args.lr_img": 0.1,
    "model.init_args.embed_weight": 0.01,
    "model.init_args.power": 4.0,
    "model.init_args.net.init_args.width": 128,
    "model.init_args.net.init_args.depth": 3,
    "model.init_args.net.init_args.norm": "instancenorm",
}
PAD_MNIST = {
    "model.init_args.ipc": 10,
    "model.init_args.init": "real",
    "model.init_args.soft_labels": True,
}
STUDY_TABLES = {
    "datadam_mhist.yaml": {  # Table II, MHIST: K = 200 x T = 10
        "trainer.max_steps": 2000,
        "model.init_args.steps_per_network": 10,
        "model.init_args.ipc": 50,
        "model.init_args.init": "real",
        "model.init_args.batch_real": 128,
        "model.init_args.lr_img": 0.1,
        "model.init_args.embed_weight": 0.01,
        "model.init_args.power": 4.0,
        "model.init_args.net.init_args.width": 32,
        "model.init_args.net.init_args.depth": 7,
        "model.init_args.net.init_args.norm": "instancenorm",
        "data.init_args.image_size": 224,
    },
    "mnist/datadam.yaml": DATADAM_MNIST,
    "mnist/datadam_noise.yaml": {**DATADAM_MNIST, "model.init_args.init": "noise"},
    "mhist/baseline.yaml": {  # Table I, MHIST
        "model.init_args.net.init_args.width": 32,
        "model.init_args.net.init_args.depth": 7,
        "model.init_args.net.init_args.norm": "instancenorm",
        "data.init_args.image_size": 224,
    },
    "mnist/baseline.yaml": {  # Table I, MNIST
        "model.init_args.net.init_args.width": 128,
        "model.init_args.net.init_args.depth": 3,
        "model.init_args.net.init_args.norm": "instancenorm",
    },
    "mnist/pad.yaml": PAD_MNIST,
    "mnist/pad_ipc10.yaml": PAD_MNIST,
    "mnist/pad_noise.yaml": {**PAD_MNIST, "model.init_args.init": "noise"},
}


@pytest.mark.parametrize("name", sorted(STUDY_TABLES))
def test_configs_carry_the_study_tables_their_headers_claim(name):
    cfg = _parse(name)
    assert {k: cfg[k] for k in STUDY_TABLES[name]} == STUDY_TABLES[name]
    if "model.init_args.lr_lr" in cfg:  # PAD: the student's learning rate is learned
        assert cfg["model.init_args.lr_lr"] > 0


def test_the_cards_config_is_the_studys_mhist_datadam():
    """``python -m ddlight fit --config configs/datadam_mhist.yaml``: K = 200 networks of T = 10 updates, on
    MHIST; and the report's MHIST DataDAM rows distil with that same file."""
    from ddlight.data import MHISTDataModule
    from ddlight.methods import DataDAM

    cfg = _parse("datadam_mhist.yaml")
    assert module_class(cfg) is DataDAM and module_class(cfg, "data") is MHISTDataModule
    assert cfg.trainer.max_steps // cfg.model.init_args.steps_per_network == 200
    assert cfg.data.init_args.data_dir == "data/mhist"
    report = yaml.safe_load((CONFIGS / "report_mnist.yaml").read_text())
    distill = report["datasets"]["mhist"]["distill"]["datadam"]
    assert distill["real"] == distill["noise"]["config"] == "configs/datadam_mhist.yaml"
