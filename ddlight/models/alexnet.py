"""AlexNet for small images as in DC's cross-architecture evaluation (5x5 stem, no norm)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddlight.models.convnet import as_size, make_norm


class AlexNet(nn.Module):
    def __init__(
        self,
        channel: int = 1,
        num_classes: int = 10,
        im_size: int | Sequence[int] = 28,
        norm: str = "none",
        width: int = 128,
    ) -> None:
        """``norm``: "none" is DC's ``AlexNet``, "batchnorm" its ``AlexNetBN`` (a norm after every conv);
        "instancenorm"/"groupnorm" as in ConvNet. ``im_size`` is accepted (every net takes the data's shape
        from the CLI's link); the stem's padding follows DC's rule (by channel count) and the last pool
        adapts to any size. ``width`` is the stem's channels (DC's 128); the other convs keep DC's
        128:192:256:192:192 ratios."""
        super().__init__()
        if norm == "layernorm":
            raise ValueError("AlexNet norm must be none, batchnorm, instancenorm or groupnorm, not layernorm")
        h, w = as_size(im_size)

        def conv(c_in: int, c_out: int, k: int, pad: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, k, 1, padding=pad), make_norm(norm, c_out, (h, w)), nn.ReLU()]

        pool = nn.MaxPool2d(2, 2)
        c1, c2, c3 = width, width * 3 // 2, width * 2
        self.features = nn.Sequential(
            # padding 4 on 28x28 digits gives the 32x32 geometry the field uses for CIFAR.
            *conv(channel, c1, 5, 4 if channel == 1 else 2),
            pool,
            *conv(c1, c2, 5, 2),
            pool,
            *conv(c2, c3, 3, 1),
            *conv(c3, c2, 3, 1),
            *conv(c2, c2, 3, 1),
            pool,
        )
        self.embed_dim = c2 * 4 * 4
        self.classifier = nn.Linear(self.embed_dim, num_classes)
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        if out.shape[-2:] != (4, 4):
            out = F.adaptive_avg_pool2d(out, 4)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
