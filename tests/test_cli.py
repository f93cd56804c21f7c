import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ddlight.cli import DDLightCLI
from tests.helpers import ROOT
from tests.helpers.runs import cli_exit

CONFIGS = ROOT / "configs"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddlight", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_print_config_round_trip(tmp_path, capsys):
    code, printed, err = cli_exit(
        ["fit", "--config", str(CONFIGS / "mnist" / "baseline.yaml"), "--print_config"], capsys
    )
    assert code == 0, err
    cfg = yaml.safe_load(printed)
    assert cfg["model"]["class_path"] == "ddlight.methods.Baseline"
    assert cfg["model"]["init_args"]["net"]["init_args"]["width"] == 128
    assert cfg["seed_everything"] == 0
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    code, again, err = cli_exit(["fit", "--config", str(saved), "--print_config"], capsys)
    assert code == 0, err
    assert yaml.safe_load(again) == cfg


def test_one_flag_swaps_the_model(tmp_path):
    cli = DDLightCLI(
        args=[
            "--config",
            str(CONFIGS / "quickstart.yaml"),
            "--model.init_args.net",
            "ddlight.models.MLP",
            "--model.init_args.net.init_args.num_classes",
            "10",
        ],
        run=False,
    )
    from ddlight.models import MLP

    assert isinstance(cli.model.net, MLP)


def test_bad_config_exits_nonzero_with_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: ddlight.methods.Baseline\n  init_args:\n    lr: fast\n")
    code, _, err = cli_exit(["fit", "--config", str(bad)], capsys)
    assert code != 0
    assert "lr" in err


@pytest.mark.slow
def test_fit_fast_dev_run_mnist(mnist_root, tmp_path):
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "baseline.yaml"),
            "--data.init_args.data_dir",
            str(mnist_root),
            "--trainer.fast_dev_run",
            "2",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
    )
    assert cli.trainer.global_step == 2
    assert cli.model.cost["macs"] > 0


def test_num_classes_mismatch_is_reported(tmp_path):
    with pytest.raises(ValueError, match="num_classes=3"):
        DDLightCLI(
            args=[
                "fit",
                "--config",
                str(CONFIGS / "quickstart.yaml"),
                "--model.init_args.net.init_args.num_classes",
                "3",
                "--trainer.fast_dev_run",
                "1",
                "--trainer.logger",
                "false",
            ],
        )


def test_fit_fast_dev_run_mhist_fixture(tmp_path):
    from tests.helpers.mhist import make_mhist_fixture

    root = make_mhist_fixture(tmp_path / "mhist", n_train=8, n_test=4, size=224)
    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mhist" / "baseline.yaml"),
            "--data.init_args.data_dir",
            str(root),
            "--data.init_args.batch_size",
            "4",
            "--trainer.fast_dev_run",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
    )
    assert cli.trainer.global_step == 1
    assert cli.datamodule.train_images.shape[1:] == (3, 224, 224)


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "model:\n  class_path: ddlight.methods.Baseline\n  init_args:\n    lr: 0.1\n   momentum: 0.9\n"
    )
    code, _, err = cli_exit(["fit", "--config", str(bad)], capsys)
    assert code != 0
    assert f"config file {bad}: YAML syntax error at line 5, column 4" in err


@pytest.mark.slow
def test_missing_data_is_one_message_not_a_traceback(tmp_path):
    out = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "mnist" / "baseline.yaml"),
        "--data.init_args.data_dir",
        "nowhere",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "ddlight: error: MNIST files not found" in out.stderr and "Traceback" not in out.stderr
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in out.stderr


def test_swapping_the_network_resets_the_old_blocks_architecture_args():
    def net_args(*flags: str):
        cli = DDLightCLI(args=["--config", str(CONFIGS / "mhist" / "baseline.yaml"), *flags], run=False)
        return cli.model.net, cli.config["model"]["init_args"]["net"]["init_args"]

    # configs/mhist/baseline.yaml types ConvNet's width 32, which ResNet18 would silently inherit
    with pytest.warns(UserWarning, match=r"swapped in ResNet18: reset width 32 -> 64"):
        net, args = net_args("--model.init_args.net", "ddlight.models.ResNet18")
    assert args["width"] == 64 and net.conv1.out_channels == 64
    assert net.conv1.in_channels == 3 and net.num_classes == 2  # the data's shape is linked in
    # a value given after the swap is the user's and is kept
    net, args = net_args("--model.init_args.net", "ResNet18", "--model.init_args.net.init_args.width", "32")
    assert args["width"] == 32 and net.conv1.out_channels == 32


def test_one_seed_flag_seeds_the_method_and_its_data(tmp_path):
    from tests.helpers.cli_args import TINY_DATADAM

    cli = DDLightCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "datadam.yaml"),
            *TINY_DATADAM,
            "--model.init_args.seed",
            "1",
            "--model.init_args.export_dir",
            str(tmp_path),
            "--trainer.max_steps",
            "1",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "logs"),  # a logger merges both modules' hparams: that is where it crashed
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert cli.model.hparams.seed == 1 and cli.datamodule.seed == 1 and cli.trainer.global_step == 1


def test_the_data_decide_the_networks_shape():
    """Configs type no channels/classes/size: the CLI links them from the data module into the net."""
    from tests.helpers.cli_args import TINY_DIGITS_NET

    cli = DDLightCLI(args=["--config", str(CONFIGS / "mnist" / "baseline.yaml"), *TINY_DIGITS_NET], run=False)
    assert cli.datamodule.shape_args() == {"channel": 1, "num_classes": 4, "im_size": (12, 12)}
    assert cli.model.net(torch.zeros(2, 1, 12, 12)).shape == (2, 4)
    mhist = DDLightCLI(
        args=[
            "--config",
            str(CONFIGS / "mhist" / "baseline.yaml"),
            "--data.init_args.image_size",
            "128",
        ],
        run=False,
    )
    assert mhist.model.net(torch.zeros(1, 3, 128, 128)).shape == (1, 2)  # nothing read from disk


def test_a_typed_shape_that_contradicts_the_data_is_refused():
    from tests.helpers.cli_args import TINY_DIGITS_NET

    flags = ("--model.init_args.net.init_args.num_classes", "5")
    with pytest.raises(
        ValueError, match=r"net.init_args sets num_classes=5 \(the data: 4\), which TinyDigits"
    ):
        DDLightCLI(
            args=["--config", str(CONFIGS / "mnist" / "baseline.yaml"), *TINY_DIGITS_NET, *flags], run=False
        )
    # the same value as the data's is no contradiction
    flags = ("--model.init_args.net.init_args.num_classes", "4")
    DDLightCLI(
        args=["--config", str(CONFIGS / "mnist" / "baseline.yaml"), *TINY_DIGITS_NET, *flags], run=False
    )


def test_parse_config_applies_overlays_and_defaults_without_instantiating():
    from ddlight.cli import module_class, parse_config
    from ddlight.methods import PAD

    cfg = parse_config(
        [
            "--config",
            str(CONFIGS / "mnist" / "pad_ipc1.yaml"),
            "--config",
            str(CONFIGS / "mnist" / "gpu" / "pad_ipc1.yaml"),
            "--data.init_args.data_dir",
            "/nowhere",  # nothing is read
        ]
    )
    assert cfg.model.init_args.syn_steps == 80 and cfg.model.init_args.ipc == 1  # overlay over base
    assert cfg.model.init_args.lr_img == 1000.0  # from the base config
    assert cfg.model.init_args.checkpoint_every == 50  # a code default the configs never type
    assert module_class(cfg) is PAD and PAD.OUTPUT_ARG == "export_dir"


@pytest.mark.parametrize("net", ["MLP", "AlexNet", "ConvNet", "ResNet18"])  # VGG11 needs >= 28 px
def test_every_net_swaps_in_by_one_flag_and_gets_the_data_shape(net):
    """Lightning stores instantiation links in the module's hparams; a net whose every argument is linked
    (AlexNet once took only channel/num_classes) made that fail ("Expected key net.init_args...")."""
    from tests.helpers.cli_args import TINY_DIGITS_NET

    args = ["--config", str(CONFIGS / "mnist" / "baseline.yaml"), *TINY_DIGITS_NET[:2]]
    cli = DDLightCLI(args=[*args, "--model.init_args.net", f"ddlight.models.{net}"], run=False)
    assert type(cli.model.net).__name__ == net
    assert cli.model.net(torch.zeros(2, 1, 12, 12)).shape == (2, 4)
    assert cli.model.hparams["net"]["init_args"]["num_classes"] == 4  # what a checkpoint reload rebuilds
