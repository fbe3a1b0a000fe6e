"""`wrn`: Wide Residual Networks, WRN-depth-k (Zagoruyko & Komodakis 2016, arXiv:1605.07146).

Three groups of n = (depth - 4) / 6 pre-activation WideBasic blocks at widths 16k, 32k, 64k
(after a 16-channel 3x3 stem), the last two starting with stride 2; then BN -> act -> global
pool -> linear. WRN-16-4 has 2.75M parameters, WRN-28-10 36.5M (10 classes), as in the paper.
model.dropout is the paper's dropout between the two convs of every block.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.layers import ACTIVATIONS, Classifier, WideBasic
from cnnlab.models.registry import register_model


@register_model("wrn")
def wrn(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    depth: int,
    widen: int,
    dropout: float,
    activation: str,
    separable: bool,
    se: bool,
) -> nn.Module:
    """Wide ResNet (Zagoruyko & Komodakis 2016): 3 groups of (depth - 4) / 6 blocks at
    16, 32, 64 x widen channels."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ConfigError(f"model.depth = {depth}: WRN depth must be 6n+4 (10, 16, 22, 28, 40)")
    n = (depth - 4) // 6
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
    cin = 16
    for group, stride in enumerate((1, 2, 2)):
        cout = 16 * widen * 2**group
        for b in range(n):
            s = stride if b == 0 else 1
            layers.append(WideBasic(cin, cout, s, dropout, activation, separable, se))
            cin = cout
    # Pre-activation blocks end on a conv: the net closes with the BN -> act they leave out.
    layers += [nn.BatchNorm2d(cin), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, Classifier(cin, num_classes, 0.0))
