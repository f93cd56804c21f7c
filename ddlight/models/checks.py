"""Checks between a network and the data it is given, shared by every stage that builds a network."""

from __future__ import annotations

from torch import nn


def check_num_classes(net: nn.Module, datamodule: object | None, where: str) -> None:
    """Fail early, naming both sides, when the network's head and the data disagree."""
    if datamodule is None or not hasattr(datamodule, "num_classes"):
        return
    want = datamodule.num_classes
    got = getattr(net, "num_classes", want)
    if got != want:
        raise ValueError(
            f"{where}: the network has num_classes={got} but {type(datamodule).__name__} has {want} classes; "
            f"set model.init_args.net.init_args.num_classes: {want}"
        )


def input_shape_of(datamodule: object) -> tuple[int, int, int]:
    h, w = datamodule.image_size
    return (datamodule.channels, h, w)


def refuse_compiled_graphs(net: nn.Module, where: str) -> None:
    """Methods that differentiate a network's gradient again (DC/DSA's gradient distance, trajectory
    matching's unrolled SGD) cannot run on compiled graphs: torch.compile has no double backward. Say so
    at construction instead of at the first backward."""
    if getattr(net, "compile_mode", False) is True:
        raise ValueError(
            f"{where} differentiates the network's gradients (a double backward), which torch.compile graphs "
            "cannot do: set model.init_args.net.init_args.compile to no_grad (compiles only the forwards "
            "without a graph) or false"
        )
