"""Small default nets: `cnn` (three conv stages) and `mlp` (a baseline without convolutions)."""

from __future__ import annotations

from torch import nn

from cnnlab.models.layers import ACTIVATIONS, Classifier, ConvBNAct, SqueezeExcite
from cnnlab.models.registry import register_model


@register_model("cnn")
def small_cnn(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: int,
    dropout: float,
    activation: str,
    separable: bool,
    se: bool,
) -> nn.Module:
    """Stages of two 3x3 ConvBNAct at widths w, 2w, 4w, halving resolution between stages
    while the map is at least 4 px, then global pooling: ~0.3M parameters at w=32.
    separable: every conv but the first is depthwise + pointwise; se: squeeze-and-excitation
    after each stage."""
    layers: list[nn.Module] = []
    cin, size = in_channels, min(image_size)
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
        if stage > 0 and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [
            ConvBNAct(cin, cout, activation, separable=separable and stage > 0),
            ConvBNAct(cout, cout, activation, separable=separable),
        ]
        if se:
            layers.append(SqueezeExcite(cout))
        cin = cout
    return nn.Sequential(*layers, Classifier(cin, num_classes, dropout))


@register_model("mlp")
def mlp(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: int,
    dropout: float,
    activation: str,
) -> nn.Module:
    """flatten -> linear(8w) -> activation -> dropout -> linear."""
    hidden = 8 * width
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size[0] * image_size[1], hidden),
        ACTIVATIONS[activation](),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
