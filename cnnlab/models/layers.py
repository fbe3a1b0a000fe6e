"""Building blocks shared by the built-in models."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class ConvBNAct(nn.Sequential):
    """conv (no bias: BN has one) -> BatchNorm -> activation; 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, activation: str, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[activation](),
        )


class Classifier(nn.Sequential):
    """Global average pool -> dropout -> linear: works for any feature-map size."""

    def __init__(self, cin: int, num_classes: int, dropout: float):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin, num_classes),
        )
