"""What a first-time user meets: the card's command without MHIST and on a generated set, and every refused
command line as one ``ddlight: error:`` line (exit 2; 1 for bad data) unless DDLIGHT_TRACEBACK=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddlight.cli import main
from ddlight.cli_errors import ConfigError, innermost
from ddlight.data import mhist_layout
from tests.helpers import CONFIGS, ROOT
from tests.helpers.builders import TinyDigits
from tests.helpers.cli_args import QUIET
from tests.helpers.runs import cli_exit

CARD = str(CONFIGS / "datadam_mhist.yaml")


class IndexedDigits(TinyDigits):
    """A data module that reads an index file when built: a missing one is the data's problem, not the
    command line's."""

    def __init__(self, index: str = "index.csv") -> None:
        if not Path(index).is_file():
            raise FileNotFoundError(f"index file not found: {index}")
        super().__init__()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def test_without_mhist_the_card_ends_with_one_line_and_a_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config's data_dir (data/mhist) is relative: nothing there
    code, _, err = cli_exit(["fit", "--config", CARD, *QUIET], capsys)
    assert code == 1
    (line,) = error_lines(err)
    assert line == err.rstrip("\n").splitlines()[-1]  # the last thing printed
    missing = tmp_path.resolve() / "data" / "mhist"
    assert line.startswith(f"ddlight: error: MHIST data_dir not found: {missing}.")
    assert "`python -m ddlight.data.mhist_layout data/mhist_generated`" in line
    assert "`--data.init_args.data_dir data/mhist_generated`; results on it are meaningless" in line
    assert "Traceback" not in err


def test_the_card_runs_on_a_generated_mhist_shaped_set(tmp_path, capsys):
    """The recipe of the line above, shrunk: a few 128x128 images (ConvNet-7 pools 128 to 1x1)."""
    mhist_layout.main([str(tmp_path / "gen"), "--per-class", "4", "--size", "128"])
    assert "meaningless" in capsys.readouterr().out
    args = ["fit", "--config", CARD, "--data.init_args.data_dir", str(tmp_path / "gen"), *QUIET]
    args += ["--data.init_args.image_size", "128", "--model.init_args.ipc", "2"]
    args += ["--model.init_args.batch_real", "4", "--trainer.max_steps", "2"]
    args += ["--model.init_args.export_dir", str(tmp_path / "out")]
    with pytest.warns(UserWarning, match="generated MHIST-shaped set .*meaningless"):
        main(args)  # returns: exit status 0
    assert (tmp_path / "out" / "synthetic.pt").is_file()


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (("--model.init_args.ipc", "0"), "model.init_args.ipc: must be >= 1, got 0"),
        (
            ("--data.init_args.image_size", "0"),
            "data.init_args.image_size: must be a positive integer, got 0",
        ),
        (
            ("--model.init_args.net.init_args.norm", "foo"),
            "model.init_args.net.init_args.norm: must be one of ('instancenorm', 'batchnorm', 'layernorm', "
            "'groupnorm', 'none'), got 'foo'",
        ),
        (  # a Literal choice: refused by the parser itself, before any stage is built
            ("--model.init_args.init", "bogus"),
            "model.init_args.init: expected one of 'real', 'noise', 'kcenter', got bogus",
        ),
    ],
)
def test_a_stage_refusing_a_value_is_one_line_naming_the_key(flags, line, capsys):
    code, _, err = cli_exit(["fit", "--config", CARD, *flags], capsys)
    assert code == 2
    assert error_lines(err) == [f"ddlight: error: {line}"]
    assert "Namespace(" not in err and "Union" not in err


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (("--model.init_args.lr_imgg", "3"), "unknown option model.init_args.lr_imgg; did you mean lr_img?"),
        (("--model.lr_imgg", "3"), "unknown option model.init_args.lr_imgg; did you mean lr_img?"),
        (
            ("--model.init_args.net.init_args.widht", "3"),
            "unknown option model.init_args.net.init_args.widht; did you mean width?",
        ),
        (
            ("--modle.init_args.ipc", "3"),
            "unknown option modle.init_args.ipc; did you mean model.init_args.ipc?",
        ),
        (
            ("--model", "ddlight.methods.DataDAMM"),
            "model: no class ddlight.methods.DataDAMM; did you mean DataDAM?",
        ),
        (("--model.init_args.ipc", "ten"), "model.init_args.ipc: expected int, got ten"),
        (("--config", "nowhere.yaml"), "config: file does not exist: '{cwd}/nowhere.yaml'"),
    ],
)
def test_a_refused_command_line_is_one_line(flags, line, capsys):
    code, out, err = cli_exit(["fit", "--config", CARD, *flags], capsys)
    assert code == 2
    assert err == f"ddlight: error: {line.format(cwd=os.getcwd())}\n" and out == ""


def test_a_file_missing_when_a_stage_is_built_is_bad_data_not_a_bad_command(capsys):
    flags = ["--data", f"{__name__}.IndexedDigits", "--data.init_args.index", "nowhere.csv"]
    code, _, err = cli_exit(["fit", "--config", str(CONFIGS / "mnist" / "baseline.yaml"), *flags], capsys)
    assert code == 1
    assert error_lines(err) == [
        "ddlight: error: index file not found: nowhere.csv (DDLIGHT_TRACEBACK=1 shows the traceback)"
    ]


def test_traceback_mode_shows_jsonargparse_and_the_chain(monkeypatch, capsys):
    monkeypatch.setenv("DDLIGHT_TRACEBACK", "1")
    code, _, err = cli_exit(["fit", "--config", CARD, "--model.init_args.lr_imgg", "3"], capsys)
    assert code == 2
    assert err.startswith("usage: ") and "Given value: NestedArg(key='lr_imgg', val='3')" in err
    with pytest.raises(ConfigError, match=r"^model\.init_args\.ipc: must be >= 1, got 0$") as raised:
        cli_exit(["fit", "--config", CARD, "--model.init_args.ipc", "0"], capsys)
    assert "Does not validate against any of the Union subtypes" in str(raised.value.__cause__)
    assert str(innermost(raised.value)) == "ipc must be >= 1, got 0"


def test_a_heap_variable_that_is_not_a_number_is_a_bad_command(monkeypatch, capsys):
    monkeypatch.setenv("DDLIGHT_MMAP_THRESHOLD", "4MB")
    code, _, err = cli_exit(["fit", "--config", CARD, *QUIET], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "ddlight: error: DDLIGHT_MMAP_THRESHOLD='4MB': expected a number of bytes (0: glibc's defaults)"
    ]


def test_usage_names_the_command_a_user_types(capsys):
    code, out, _ = cli_exit(["--help"], capsys)
    assert code == 0 and out.startswith("usage: ddlight [-c CONFIG] {fit,validate,test,predict}")
    # run as `python -m ddlight` (here with the full report, DDLIGHT_TRACEBACK=1, which prints usage)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DDLIGHT_TRACEBACK": "1"}
    real = subprocess.run(
        [sys.executable, "-m", "ddlight", "fit", "--trainer.max_stepz", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert real.returncode == 2 and real.stderr.startswith("usage: python -m ddlight [options] fit ")
    assert "__main__" not in real.stderr
