"""The ConvNet used throughout dataset distillation (DC/DSA/DM/MTT/DataDAM/PAD).

Conventions kept from the field so results are comparable with published numbers:
blocks of 3x3 conv -> norm -> activation -> 2x2 pool; "instancenorm" is ``GroupNorm(C, C)`` with
affine parameters (the field's instance norm, which is learnable); a 28x28 input is padded to 32x32 by
the first conv (padding 3) so that feature maps go 32 -> 16 -> 8 -> 4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTS = ("relu", "sigmoid", "leakyrelu")
POOLS = ("avgpooling", "maxpooling", "none")


def make_norm(norm: str, channels: int, spatial: tuple[int, int]) -> nn.Module:
    """Normalisation layer by the field's names (shared by ConvNet, VGG and ResNet)."""
    if norm == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "layernorm":
        return nn.LayerNorm([channels, *spatial], elementwise_affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def make_act(act: str) -> nn.Module:
    if act == "relu":
        return nn.ReLU()
    if act == "sigmoid":
        return nn.Sigmoid()
    if act == "leakyrelu":
        return nn.LeakyReLU(0.01)
    raise ValueError(f"act must be one of {ACTS}, got {act!r}")


def make_pool(pooling: str) -> nn.Module:
    if pooling == "avgpooling":
        return nn.AvgPool2d(2, 2)
    if pooling == "maxpooling":
        return nn.MaxPool2d(2, 2)
    if pooling == "none":
        return nn.Identity()
    raise ValueError(f"pooling must be one of {POOLS}, got {pooling!r}")


def as_size(im_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(im_size, int):
        return (im_size, im_size)
    h, w = im_size
    return (int(h), int(w))


class ConvNet(nn.Module):
    """ConvNet-D with width W.

    ``forward_blocks`` returns every block's activation (after the activation, before pooling) and the
    flattened embedding in one pass: DataDAM matches attention maps of all blocks and the embedding,
    and getting both from one forward avoids hooks and a second pass.
    """

    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        act: str = "relu",
        pooling: str = "avgpooling",
        im_size: int | Sequence[int] = 28,
    ) -> None:
        super().__init__()
        h, w = as_size(im_size)
        first_pad = 1
        if (h, w) == (28, 28):
            # The field pads 28x28 digits to 32x32 so MNIST shares CIFAR's 4x4 final feature map.
            first_pad, h, w = 3, 32, 32
        blocks = []
        in_ch = channel
        for d in range(depth):
            conv = nn.Conv2d(in_ch, width, kernel_size=3, padding=first_pad if d == 0 else 1)
            blocks.append(nn.Sequential(conv, make_norm(norm, width, (h, w)), make_act(act)))
            in_ch = width
            if pooling != "none":
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"ConvNet depth {depth} pools a {as_size(im_size)} input below 1x1; use a smaller depth, "
                "a larger im_size or pooling='none'"
            )
        self.blocks = nn.ModuleList(blocks)
        self.pool = make_pool(pooling)
        self.embed_dim = width * h * w
        self.feature_shape = (width, h, w)
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self.num_classes = num_classes

    def forward_blocks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        acts = []
        for block in self.blocks:
            x = block(x)
            acts.append(x)
            x = self.pool(x)
        return acts, x.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = self.pool(block(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
