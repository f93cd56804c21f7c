"""Runs that finish, interrupted runs that keep their work, diverging runs that stop early, and the messages
a newcomer meets first (issue: Reliability)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from ddlight.artifacts import LAST_CHECKPOINT
from ddlight.cli import DDLightCLI
from ddlight.data import MNISTDataModule, SyntheticSet
from ddlight.data.base import ClassBalancedEpisodes
from ddlight.data.zca import Normalizer
from ddlight.methods import DataDAM
from ddlight.methods.run_guard import DivergedError
from ddlight.models import ConvNet
from tests.helpers import ROOT
from tests.helpers.cli_args import TINY_DATADAM
from tests.helpers.runs import cli_exit

CONFIGS = ROOT / "configs"


def ddlight_cmd(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m ddlight`` in a subprocess, with ``tests.helpers`` importable for probe callbacks."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "ddlight", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_distiller(**kw) -> DataDAM:
    args = dict(ipc=1, batch_real=4, steps_per_network=100, grid_every=0, dsa_strategy="none", lr_img=1.0)
    args.update(kw)
    return DataDAM(ConvNet(width=8, micro_batch=0), **args)


def quiet_trainer(tmp_path: Path, **kw) -> L.Trainer:
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", True)
    return L.Trainer(enable_progress_bar=False, default_root_dir=tmp_path, **kw)


# --------------------------------------------------------------------------------- Ctrl-C and resume
@pytest.mark.slow
def test_sigint_checkpoints_exports_partial_and_resumes_to_the_uninterrupted_images(tmp_path):
    common = (
        "fit",
        "--config",
        str(CONFIGS / "mnist" / "datadam.yaml"),
        *TINY_DATADAM,
        "--model.init_args.grid_every",
        "0",
        "--model.init_args.checkpoint_every",
        "100",  # no periodic save before the interrupt: the checkpoint must come from the interrupt itself
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.max_steps",
        "10",
    )
    out = ddlight_cmd(
        *common,
        "--model.init_args.export_dir",
        str(tmp_path / "cut"),
        "--trainer.callbacks+=tests.helpers.probes.InterruptAt",
        "--trainer.callbacks.step=4",
        cwd=tmp_path,
    )
    assert out.returncode == 130, out.stderr[-3000:]
    assert "interrupted (Ctrl-C) at step 4" in out.stderr + out.stdout
    cut = SyntheticSet.load(tmp_path / "cut" / "synthetic.pt")
    assert cut.iteration == 4 and "interrupted" in cut.partial
    ckpt = tmp_path / "cut" / "checkpoints" / LAST_CHECKPOINT
    assert torch.load(ckpt, weights_only=False)["global_step"] == 4

    # Lightning's CLI takes the model's hyper-parameters (export_dir too) from the checkpoint on resume,
    # so the resumed run finishes the interrupted run's folder.
    resumed = DDLightCLI(args=[*common, "--ckpt_path", str(ckpt)])
    full = DDLightCLI(args=[*common, "--model.init_args.export_dir", str(tmp_path / "full")])
    assert resumed.trainer.global_step == full.trainer.global_step == 10
    assert torch.equal(resumed.model.images.detach(), full.model.images.detach())
    done = SyntheticSet.load(tmp_path / "cut" / "synthetic.pt")
    assert done.partial == "" and done.iteration == 10
    torch.testing.assert_close(done.images, full.model.images.detach(), rtol=0, atol=0)


def test_an_exception_mid_run_exports_the_set_as_it_stands(tmp_path):
    class Boom(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 3:
                raise RuntimeError("disk on fire")

    model = tiny_distiller(export_dir=str(tmp_path))
    trainer = quiet_trainer(tmp_path, max_steps=10, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="disk on fire"):
        trainer.fit(model, MNISTDataModule(source="bundled", episode_per_class=4))
    syn = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert syn.iteration == 3 and "RuntimeError" in syn.partial
    torch.testing.assert_close(syn.images, model.images.detach())


# ------------------------------------------------------------------------------------ divergence
def test_divergence_stops_restores_the_last_finite_set_and_checkpoint(tmp_path):
    class Poison(L.Callback):  # a NaN appears in the images after step 7
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 7:
                with torch.no_grad():
                    pl_module.images[0, 0, 0, 0] = float("nan")

    model = tiny_distiller(export_dir=str(tmp_path), check_every=5, checkpoint_every=5)
    trainer = quiet_trainer(tmp_path, max_steps=40, callbacks=[Poison()])
    with pytest.raises(DivergedError, match=r"\['images'\].*step 10.*model\.init_args\.lr_img \(now 1\)"):
        trainer.fit(model, MNISTDataModule(source="bundled", episode_per_class=4))
    assert trainer.global_step == 10  # stopped at the first check after the NaN, not at max_steps
    syn = SyntheticSet.load(tmp_path / "synthetic.pt")  # loads: it is finite
    assert syn.iteration == 5 and "diverged" in syn.partial
    ckpt = torch.load(tmp_path / "checkpoints" / LAST_CHECKPOINT, weights_only=False)
    assert ckpt["global_step"] == 5
    torch.testing.assert_close(ckpt["state_dict"]["images"], syn.images)


def test_huge_learning_rate_fails_fast_naming_it_without_a_traceback(tmp_path, capsys):
    code, _, err = cli_exit(
        [
            "fit",
            "--config",
            str(CONFIGS / "mnist" / "datadam.yaml"),
            *TINY_DATADAM,
            "--model.init_args.lr_img",
            "1e30",
            "--model.init_args.export_dir",
            str(tmp_path),
            "--trainer.max_steps",
            "200",
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
        ],
        capsys,
    )
    assert code == 1
    assert "diverged" in err and "model.init_args.lr_img (now 1e+30)" in err
    assert "Traceback" not in err
    syn = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert syn.partial and syn.iteration < 200 and torch.isfinite(syn.images).all()


# ------------------------------------------------------------------------------- wrong-size inputs
def test_ipc_above_a_class_size_is_refused(tmp_path):
    model = tiny_distiller(ipc=500, export_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"ipc=500 exceeds.*would repeat images.*at most 400\."):
        quiet_trainer(tmp_path, max_steps=1).fit(
            model, MNISTDataModule(source="bundled", episode_per_class=4)
        )


def test_episodes_larger_than_a_class_warn():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    images = torch.zeros(8, 1, 2, 2, dtype=torch.uint8)
    with pytest.warns(UserWarning, match="class 0 has only 3 training images"):
        ClassBalancedEpisodes(images, labels, 2, 4, Normalizer(torch.zeros(1), torch.ones(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClassBalancedEpisodes(images, labels, 2, 3, Normalizer(torch.zeros(1), torch.ones(1)))
