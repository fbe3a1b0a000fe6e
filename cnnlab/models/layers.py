"""Building blocks shared by the built-in models.

`separable` (model.separable) swaps a full 3x3 convolution for depthwise 3x3 + pointwise 1x1
wherever a net calls `conv3x3`; nets keep their stem (the conv reading the 1-3 image channels)
full, because a depthwise conv over so few channels saves almost nothing and learns little.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (one filter per input channel) -> pointwise 1x1: a drop-in for a 3x3 conv
    with 9*cin + cin*cout weights instead of 9*cin*cout. No BN between the two (Xception-style),
    so it replaces exactly one conv."""

    def __init__(self, cin: int, cout: int, stride: int, bias: bool = False):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=bias),
        )


def conv3x3(cin: int, cout: int, stride: int, separable: bool, bias: bool = False) -> nn.Module:
    """3x3 'same'-padded convolution (output size ceil(size / stride)); bias off when BN follows."""
    if separable:
        return SeparableConv(cin, cout, stride, bias=bias)
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class ConvBNAct(nn.Sequential):
    """conv (no bias: BN has one) -> BatchNorm -> activation; 'same' padding for odd kernels.
    separable applies to 3x3 kernels only."""

    def __init__(
        self,
        cin: int,
        cout: int,
        activation: str,
        kernel: int = 3,
        stride: int = 1,
        separable: bool = False,
    ):
        if kernel == 3:
            conv = conv3x3(cin, cout, stride, separable)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        super().__init__(conv, nn.BatchNorm2d(cout), ACTIVATIONS[activation]())


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): rescale each channel by a gate in (0, 1)
    computed from the globally pooled map; adds 2 * channels * channels / reduction weights."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, C, 1, 1)
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity when shapes agree, else the projection 1x1 conv (stride) -> BN."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet-18/34 block: act(BN(conv3x3(act(BN(conv3x3(x))))) [-> SE] + shortcut(x))."""

    expansion = 1

    def __init__(
        self, cin: int, planes: int, stride: int, activation: str, separable: bool, se: bool
    ):
        super().__init__()
        self.residual = nn.Sequential(
            conv3x3(cin, planes, stride, separable),
            nn.BatchNorm2d(planes),
            ACTIVATIONS[activation](),
            conv3x3(planes, planes, 1, separable),
            nn.BatchNorm2d(planes),
            SqueezeExcite(planes) if se else nn.Identity(),
        )
        self.shortcut = _shortcut(cin, planes, stride)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50 block: 1x1 reduce -> 3x3 (carries the stride, as torchvision's "v1.5")
    -> 1x1 expand to 4 * planes [-> SE], plus the shortcut, then the activation."""

    expansion = 4

    def __init__(
        self, cin: int, planes: int, stride: int, activation: str, separable: bool, se: bool
    ):
        super().__init__()
        cout = planes * self.expansion
        self.residual = nn.Sequential(
            conv1x1(cin, planes),
            nn.BatchNorm2d(planes),
            ACTIVATIONS[activation](),
            conv3x3(planes, planes, stride, separable),
            nn.BatchNorm2d(planes),
            ACTIVATIONS[activation](),
            conv1x1(planes, cout),
            nn.BatchNorm2d(cout),
            SqueezeExcite(cout) if se else nn.Identity(),
        )
        self.shortcut = _shortcut(cin, cout, stride)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


class WideBasic(nn.Module):
    """Wide-ResNet block, pre-activation (Zagoruyko & Komodakis 2016):
    conv3x3(act(BN(x))) -> BN -> act -> dropout -> conv3x3 [-> SE], plus the shortcut. When the
    shape changes the 1x1 projection reads the pre-activated input, as in the authors' code."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        dropout: float,
        activation: str,
        separable: bool,
        se: bool,
    ):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), ACTIVATIONS[activation]())
        self.residual = nn.Sequential(
            conv3x3(cin, cout, stride, separable),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            conv3x3(cout, cout, 1, separable),
            SqueezeExcite(cout) if se else nn.Identity(),
        )
        self.project = None if stride == 1 and cin == cout else conv1x1(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.pre(x)
        shortcut = x if self.project is None else self.project(o)
        return self.residual(o) + shortcut


class Classifier(nn.Sequential):
    """Global average pool -> dropout -> linear: works for any feature-map size."""

    def __init__(self, cin: int, num_classes: int, dropout: float):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin, num_classes),
        )
