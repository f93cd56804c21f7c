"""ResNet-18 for small images as used in dataset distillation (DC's ``ResNet18``/``ResNet18BN``).

A 3x3 stride-1 stem without max-pooling keeps 28x28/32x32 inputs from collapsing too early; the norm is
selectable so the instance-norm variant (the field's default for distilled data) and the batch-norm
variant are one flag apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddlight.models.convnet import make_norm


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "layernorm":
        raise ValueError("ResNet18 supports norm 'instancenorm', 'batchnorm', 'groupnorm' or 'none'")
    return make_norm(norm, channels, (1, 1))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), _norm(norm, planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        norm: str = "instancenorm",
        width: int = 64,
        im_size: int | Sequence[int] = 28,
    ) -> None:
        """``im_size`` is accepted (every net takes the data's shape from the CLI's link) but not needed:
        the global average pool makes the network size-agnostic."""
        super().__init__()
        self.conv1 = nn.Conv2d(channel, width, 3, 1, 1, bias=False)
        self.bn1 = _norm(norm, width)
        layers, in_planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            layers += [BasicBlock(in_planes, planes, stride, norm), BasicBlock(planes, planes, 1, norm)]
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.embed_dim = in_planes
        self.classifier = nn.Linear(in_planes, num_classes)
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
