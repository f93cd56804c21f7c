"""DC-Bench's evaluation loop (justincui03/dc_benchmark evaluator_utils.py): ddlight's DC-Bench preset
option (``schedule: reference``) must end at the weights, logits and test accuracy their loop computed
(``python -m benchmarks.parity dcbench``), and the preset config must use it at DC-Bench's length."""

import yaml

from benchmarks.parity.evaluator import ROWS, ours
from tests.helpers import CONFIGS
from tests.helpers.parity import assert_matches, load


def test_dcbench_loop_matches():
    fixture = load("dcbench")
    assert fixture["manifest"]["repo"] == "justincui03/dc_benchmark"
    mine = ours(fixture["inputs"])
    for key, label in ROWS:
        assert_matches(fixture, label, mine[key], fixture["outputs"][key])


def test_dcbench_preset_is_their_protocol():
    args = yaml.safe_load((CONFIGS / "mnist" / "evaluate_dcbench.yaml").read_text())["model"]["init_args"]
    # --dsa: epoch_eval_train 1000 -> range(1001); lr 0.01, momentum 0.9, wd 5e-4, fresh SGD at the decay
    assert args["schedule"] == "reference" and args["epochs"] == 1001
    assert (args["lr"], args["momentum"], args["weight_decay"]) == (0.01, 0.9, 0.0005)
    assert args["dsa"] is True and args["dsa_strategy"] == "color_crop_cutout_flip_scale_rotate"
