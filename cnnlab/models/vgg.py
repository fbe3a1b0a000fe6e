"""`vgg`: plain stacks of 3x3 convolutions (Simonyan & Zisserman 2015), sized by model.stages."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.layers import ACTIVATIONS, Classifier, conv3x3
from cnnlab.models.registry import register_model


@register_model("vgg")
def vgg(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: int,
    stages: list[int],
    bn: bool,
    dropout: float,
    activation: str,
    separable: bool,
) -> nn.Module:
    """Stage i: stages[i] 3x3 convs (-> BN when bn) -> act at width * 2**i channels, then a
    2x2 max-pool while the map is >= 2 px; then global average pool -> dropout -> linear.
    stages=[2, 2, 2] at width 32 is ~0.29M parameters. The first conv is never separable."""
    if not stages or any(n < 1 for n in stages):
        raise ConfigError(
            f"model.stages = {list(stages)}: expected one or more conv counts, each >= 1"
        )
    layers: list[nn.Module] = []
    cin, size = in_channels, min(image_size)
    for i, count in enumerate(stages):
        cout = width * 2**i
        for _ in range(count):
            first = not layers
            # Without BN the conv keeps its bias; with BN the BN's shift replaces it.
            layers.append(conv3x3(cin, cout, 1, separable and not first, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(ACTIVATIONS[activation]())
            cin = cout
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    return nn.Sequential(*layers, Classifier(cin, num_classes, dropout))
