"""VGG-11 in the dataset-distillation convention (DC's ``VGG11``): instance norm by default, and a
28x28 single-channel input padded to 32x32 by the first conv so five poolings end at 1x1."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddlight.models.convnet import as_size, make_norm

_CFG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        norm: str = "instancenorm",
        im_size: int | Sequence[int] = 28,
        width: int = 64,
    ) -> None:
        """``width`` is the first block's channels (64 in VGG and DC); later blocks keep VGG's 1:2:4:8
        ratios. Narrow widths serve smoke tests and cheap cross-architecture probes."""
        super().__init__()
        h, w = as_size(im_size)
        if min(h, w) < 32 and (h, w) != (28, 28):
            raise ValueError(f"VGG11 pools five times: it needs at least 32x32 images (or 28x28): {h}x{w}")
        pad_first = 3 if (h, w) == (28, 28) else 1
        layers: list[nn.Module] = []
        in_ch, first = channel, True
        h, w = (32, 32) if pad_first == 3 else (h, w)
        for v in _CFG11:
            v = v if v == "M" else v * width // 64
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
                continue
            layers += [
                nn.Conv2d(in_ch, v, 3, padding=pad_first if first else 1),
                make_norm(norm, v, (h, w)),
                nn.ReLU(),
            ]
            in_ch, first = v, False
        self.features = nn.Sequential(*layers)
        self.embed_dim = in_ch
        self.classifier = nn.Linear(in_ch, num_classes)
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if out.shape[-1] != 1 or out.shape[-2] != 1:
            out = F.adaptive_avg_pool2d(out, 1)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
