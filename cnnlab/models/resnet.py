"""`resnet18`, `resnet34`, `resnet50` (He et al. 2016), shaped for small images by default.

With width=64, stem=imagenet, maxpool=true and 3 input channels they are torchvision's
resnet18/34/50 layer for layer (same parameter count); the default small stem (3x3, stride 1,
no max-pool) keeps the full resolution of 28-64 px images for the first stage.
"""

from __future__ import annotations

import inspect

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.layers import ACTIVATIONS, BasicBlock, Bottleneck, Classifier
from cnnlab.models.registry import register_model

STAGE_STRIDES = (1, 2, 2, 2)


def _out(size: int, stride: int) -> int:
    """Map size after a 'same'-padded conv or pool with this stride: ceil(size / stride)."""
    return (size - 1) // stride + 1


def _resnet(
    block: type[BasicBlock] | type[Bottleneck],
    blocks: tuple[int, int, int, int],
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    width: int,
    stem: str,
    maxpool: bool,
    extra_pool_after: list[int],
    separable: bool,
    se: bool,
    activation: str,
    dropout: float,
) -> nn.Module:
    bad = [s for s in extra_pool_after if not 1 <= s <= 4]
    if bad:
        raise ConfigError(
            f"model.extra_pool_after = {list(extra_pool_after)}: stages are numbered 1..4"
        )
    size = min(image_size)
    if stem == "imagenet":  # 7x7 stride 2, as torchvision
        conv = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        size = _out(size, 2)
    else:  # "small": 3x3 stride 1, full conv (never separable: it reads the image channels)
        conv = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(width), ACTIVATIONS[activation]()]
    if maxpool:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        size = _out(size, 2)
    cin = width
    for stage, (count, stride) in enumerate(zip(blocks, STAGE_STRIDES, strict=True), start=1):
        planes = width * 2 ** (stage - 1)
        for b in range(count):
            s = stride if b == 0 else 1
            layers.append(block(cin, planes, s, activation, separable, se))
            cin = planes * block.expansion
        size = _out(size, stride)
        if stage in extra_pool_after:
            if size < 2:
                raise ConfigError(
                    f"model.extra_pool_after = {list(extra_pool_after)}: after stage {stage} the"
                    f" map of a {image_size[0]}x{image_size[1]} image is {size} px, too small to"
                    " pool; use larger images or pool after an earlier stage"
                )
            layers.append(nn.MaxPool2d(2))
            size //= 2
    return nn.Sequential(*layers, Classifier(cin, num_classes, dropout))


def _variant(name: str, block: type[BasicBlock] | type[Bottleneck], blocks, doc: str):
    """Register `name` as _resnet with these blocks. The builder's signature is _resnet's
    minus (block, blocks): models.build reads it to pass exactly the options resnets take."""

    def builder(**options) -> nn.Module:
        return _resnet(block, blocks, **options)

    params = list(inspect.signature(_resnet).parameters.values())[2:]
    builder.__signature__ = inspect.Signature(params, return_annotation=nn.Module)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    return register_model(name)(builder)


resnet18 = _variant(
    "resnet18",
    BasicBlock,
    (2, 2, 2, 2),
    "BasicBlocks [2, 2, 2, 2] at width * (1, 2, 4, 8): 11.2M params at width 64.",
)
resnet34 = _variant(
    "resnet34",
    BasicBlock,
    (3, 4, 6, 3),
    "BasicBlocks [3, 4, 6, 3] at width * (1, 2, 4, 8): 21.3M params at width 64.",
)
resnet50 = _variant(
    "resnet50",
    Bottleneck,
    (3, 4, 6, 3),
    "Bottlenecks [3, 4, 6, 3], outputs 4 * width * (1, 2, 4, 8): 23.5M at width 64.",
)
