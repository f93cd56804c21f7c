"""The methods' facts live on their classes: the report reads them from there."""

import pytest

from ddlight.methods import DC, DISTILLERS, DSA
from ddlight.methods.distiller import Distiller
from ddlight.methods.matching.base import RandomNetworkMatching
from ddlight.methods.trajectory.core import TrajectoryMatching
from ddlight.models import ConvNet
from ddlight.report.study import needs_experts
from ddlight.report.tables import method_title


def test_every_method_is_registered_under_its_own_name_with_its_facts() -> None:
    assert set(DISTILLERS) == {"dc", "dsa", "dm", "datadam", "mtt", "datm", "pad"}
    for key, cls in DISTILLERS.items():
        assert cls.method_name == key
        assert cls.display_name.lower() == key  # DataDAM, DATM: the papers' capitalisation
        assert cls.needs_experts == issubclass(cls, TrajectoryMatching)


def test_the_report_takes_titles_and_expert_dependencies_from_the_classes() -> None:
    assert [method_title(m) for m in ("datadam", "datm", "dm", "not_a_method")] == [
        "DataDAM",
        "DATM",
        "DM",
        "not_a_method",
    ]
    assert [needs_experts(m) for m in ("mtt", "datm", "pad", "dm", "dc", "unknown")] == [True] * 3 + [
        False
    ] * 3


def test_dc_with_an_augmentation_strategy_is_dsa() -> None:
    net = ConvNet(channel=1, num_classes=2, width=8, depth=1, im_size=(8, 8))
    dc = DC(net, ipc=1, dsa_strategy="flip")
    assert (dc.method_name, dc.display_name) == ("dsa", "DSA")
    assert (DC.method_name, DSA.method_name) == ("dc", "dsa")
    assert DC(net, ipc=1).method_name == "dc"


def test_a_method_without_its_loss_is_refused_at_construction() -> None:
    class NoLoss(RandomNetworkMatching):
        pass

    with pytest.raises(TypeError, match="abstract method distill_losses"):
        Distiller()
    with pytest.raises(TypeError, match="abstract method losses"):
        NoLoss(ConvNet(width=8, depth=1))
