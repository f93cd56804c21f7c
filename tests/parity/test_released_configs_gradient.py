"""configs/mnist/{dc,dsa}_ipc{1,10,50}.yaml are the released protocol of VICO-UoE/DatasetCondensation
main.py @ 53f63a6 (DC: ``python main.py --dataset MNIST --model ConvNet --ipc N``; DSA: the README's
``--init real --method DSA --dsa_strategy color_crop_cutout_flip_scale_rotate``): each config is parsed
as a run would parse it (code defaults filled in) and held to the released values written out here."""

import pytest

from ddlight.cli import DDLightCLI
from ddlight.methods import DC, DSA
from tests.helpers import CONFIGS

# main.py's argparse defaults (lines 18-32) and utils.get_loops / get_default_convnet_setting
RELEASED = {"lr_img": 0.1, "momentum": 0.5, "lr_net": 0.01, "momentum_net": 0.0, "batch_real": 256}
RELEASED |= {"batch_train": 256}
GET_LOOPS = {1: (1, 1), 10: (10, 50), 50: (50, 10)}
CONVNET = {"width": 128, "depth": 3, "norm": "instancenorm", "act": "relu", "pooling": "avgpooling"}
ITERATIONS = 1000 + 1  # for it in range(args.Iteration + 1), Iteration 1000
METHODS = {
    "dc": (DC, "noise", "none"),  # --init default noise; no augmentation while distilling
    "dsa": (DSA, "real", "color_crop_cutout_flip_scale_rotate"),  # flips digits, as released
}


@pytest.mark.parametrize("ipc", sorted(GET_LOOPS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_released_config_is_the_released_protocol(method, ipc):
    path = CONFIGS / "mnist" / f"{method}_ipc{ipc}.yaml"
    cli = DDLightCLI(args=["--config", str(path)], run=False)
    cls, init, strategy = METHODS[method]
    model, hp = cli.model, cli.model.hparams
    assert type(model) is cls and model.method_name == method
    assert (hp.ipc, hp.init, hp.dsa_strategy) == (ipc, init, strategy)
    assert {k: hp[k] for k in RELEASED} == RELEASED
    assert (model.outer_loop, model.inner_loop) == GET_LOOPS[ipc]
    assert cli.config.trainer.max_steps == ITERATIONS * GET_LOOPS[ipc][0]
    assert {k: cli.config.model.init_args.net.init_args[k] for k in CONVNET} == CONVNET
    assert cli.datamodule.hparams.episode_per_class == 256  # linked from batch_real
    assert "released protocol exactly" in path.read_text().splitlines()[0] + path.read_text().splitlines()[1]


def test_dsa_by_name_refuses_no_augmentation():
    from ddlight.models import ConvNet

    with pytest.raises(ValueError, match="DSA needs an augmentation strategy"):
        DSA(ConvNet(width=8), ipc=1, dsa_strategy="none")
    assert DSA(ConvNet(width=8), ipc=1, dsa_strategy="auto").method_name == "dsa"
