"""Every shipped config parses (the check ``--print_config`` makes, without reading data), overlays on the
base their header names; and the DataDAM paper overlay changes exactly the values the authors' table and
their code disagree on."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert module_class(cfg).__module__.startswith("ddlight.methods")
    assert module_class(cfg, "data").__module__.startswith("ddlight.data")


@pytest.mark.parametrize(("overlay", "base"), sorted(OVERLAY_BASE.items()))
def test_every_overlay_parses_on_its_base(overlay, base):
    assert module_class(_parse(base, overlay)).__module__.startswith("ddlight.methods")


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
