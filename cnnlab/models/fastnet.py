"""`fastnet`: a small, fast net for 28-64 px images, after Keller Jordan's airbench94
(https://github.com/KellerJordan/cifar10-airbench), which reaches 94% on CIFAR-10 in seconds.

The shape is airbench94's scaled by width / 32: a 2x2 unpadded conv stem (airbench's patch-
whitening layer, here learned) at `width` channels, three conv groups at 2w, 8w, 8w
(airbench: 24 -> 64, 256, 256), global max-pool, and a bias-free linear whose output is scaled
by 1/9 (airbench's temperature, which keeps early logits small). Not reproduced here: the
whitening initialisation, BN details, and airbench's training tricks (lookahead, TTA, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.layers import ACTIVATIONS
from cnnlab.models.registry import register_model


class ConvGroup(nn.Sequential):
    """conv3x3 -> maxpool 2 (while the map is >= 2 px) -> BN -> act -> conv3x3 -> BN -> act."""

    def __init__(self, cin: int, cout: int, activation: str, pool: bool):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.MaxPool2d(2) if pool else nn.Identity(),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[activation](),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[activation](),
        )


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


@register_model("fastnet")
def fastnet(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: int,
    activation: str,
    dropout: float,
) -> nn.Module:
    """~1.97M parameters at width 32 (airbench94's net); the 2x2 stem trims 1 px: 32 -> 31."""
    size = min(image_size) - 1
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 2, padding=0, bias=True),
        ACTIVATIONS[activation](),
    ]
    cin = width
    for cout in (2 * width, 8 * width, 8 * width):
        layers.append(ConvGroup(cin, cout, activation, pool=size >= 2))
        size = size // 2 if size >= 2 else size
        cin = cout
    return nn.Sequential(
        *layers,
        nn.AdaptiveMaxPool2d(1),  # (B, 8w, 1, 1)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(cin, num_classes, bias=False),
        Scale(1 / 9),
    )
