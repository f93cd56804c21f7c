"""Every command the README shows is run here or by CI, so the README cannot drift from the code.

``python -m ddlight fit`` lines are parsed as the CLI would parse them (every ``--config`` overlay and
flag, nothing instantiated, no data read), report lines are parsed with ``--check``, and the install, test
and docs commands must be the ones ``.ci/run`` executes. A command this file does not know fails the test:
add a check for it rather than a command nobody runs. The Python excerpt must be lines of the example that
``tests/test_examples.py`` executes, and every relative link must reach a file and heading.
"""

from __future__ import annotations

import re
import shlex

import pytest

from ddlight.cli import parse_config
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def commands() -> list[str]:
    """Shell commands of the ``bash`` blocks (continuation lines joined, comments dropped)."""
    out = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line:
                out.append(line)
    return out


def inline_commands() -> list[str]:
    """Commands quoted in running text that a reader would copy."""
    return [c for c in re.findall(r"`([^`\n]+)`", README) if re.match(r"(python|pip|mkdocs|tensorboard) ", c)]


def fit_args(cmd: str) -> list[str]:
    args = shlex.split(cmd)[3:]
    assert args[0] == "fit", cmd
    return [a for a in args[1:] if a != "--print_config"]  # parse it, without printing and exiting


FIT = [c for c in commands() if c.startswith("python -m ddlight fit ")]
REPORT = [c for c in commands() if c.startswith("python -m ddlight.report ")]
CI_RUN = {
    "python3 -m venv .venv && . .venv/bin/activate",
    'pip install -e ".[dev]"',
    "python -m pytest -q",
    'pip install -e ".[docs]"',
    "mkdocs build --strict",
}
OTHER = {
    "python -m ddlight.data.mhist_layout OUT": "ddlight/data/mhist_layout.py",
    "python examples/python_api.py": "examples/python_api.py",
}


def test_every_readme_command_is_checked_somewhere():
    unknown = [
        c
        for c in commands() + inline_commands()
        if c not in FIT + REPORT and c not in CI_RUN and c not in OTHER and c != "tensorboard --logdir logs"
    ]
    assert not unknown, f"README commands no test runs: {unknown}"
    assert FIT and REPORT


@pytest.mark.parametrize("cmd", FIT)
def test_fit_commands_parse(cmd):
    args = fit_args(cmd)
    missing = [
        args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config" and not (ROOT / args[i + 1]).exists()
    ]
    assert not missing, f"README names configs this checkout lacks: {missing}"
    cfg = parse_config([str(ROOT / a) if a.startswith("configs/") else a for a in args])
    assert str(cfg.model.class_path).startswith(("ddlight.methods.", "ddlight.evaluation."))


@pytest.mark.slow
@pytest.mark.parametrize("cmd", REPORT)
def test_report_commands_parse_every_stage(cmd, capsys):
    from ddlight.report.__main__ import main

    args = shlex.split(cmd)[3:]
    main([str(ROOT / a) if a.startswith("configs/") else a for a in args] + ["--check"])
    assert "[report] ok" in capsys.readouterr().out  # a stage that fails to parse raises


def test_install_test_and_docs_commands_are_what_ci_runs():
    for cmd in CI_RUN:
        assert cmd in commands(), f"README lost {cmd!r}"
        assert cmd in CI, f".ci/run does not run {cmd!r}"
    # and in the README's order: a fresh environment, install, tests, docs
    positions = [CI.index(cmd) for cmd in sorted(CI_RUN, key=commands().index)]
    assert positions == sorted(positions), ".ci/run runs the README's commands in another order"


@pytest.mark.parametrize(("cmd", "path"), sorted(OTHER.items()))
def test_other_commands_name_runnable_files(cmd, path):
    source = ROOT / path
    assert source.exists() and "__main__" in source.read_text(), f"{cmd!r}: {path} has no command line"
    assert cmd in commands()


def test_python_excerpt_is_the_tested_example():
    example = {line.strip() for line in (ROOT / "examples" / "python_api.py").read_text().splitlines()}
    for block in code_blocks("python"):
        missing = [line for line in block.splitlines() if line.strip() and line.strip() not in example]
        assert not missing, f"README's Python lines not in examples/python_api.py: {missing}"


def slug(heading: str) -> str:
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def test_relative_links_reach_files_and_headings():
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.exists(), f"README links to missing {path}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{target}: no such heading"
