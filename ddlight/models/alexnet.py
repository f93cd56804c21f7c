"""AlexNet for small images as in DC's cross-architecture evaluation (5x5 stem, no norm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, channel: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # padding 4 on 28x28 digits gives the 32x32 geometry the field uses for CIFAR.
            nn.Conv2d(channel, 128, 5, 1, padding=4 if channel == 1 else 2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(192, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 192, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(192, 192, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.embed_dim = 192 * 4 * 4
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if out.shape[-2:] != (4, 4):
            out = F.adaptive_avg_pool2d(out, 4)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
