"""The field's 3-layer MLP (DC/DM cross-architecture baseline): two 128-unit hidden layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ddlight.models.convnet import as_size


class MLP(nn.Module):
    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        im_size: int | Sequence[int] = 28,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        h, w = as_size(im_size)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(channel * h * w, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.embed_dim = hidden
        self.classifier = nn.Linear(hidden, num_classes)
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))
