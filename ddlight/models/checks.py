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
