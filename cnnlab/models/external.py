"""model.name = torchvision:NAME or timm:NAME: classifiers from those libraries, untrained.

Weights are never downloaded here (weights=None, pretrained=False): building a model must work
offline and give the same net every time; pretrained starts belong to transfer/.

    torchvision:NAME  torchvision.models.get_model(NAME, weights=None, num_classes=...); the
                      classification models only. When in_channels != 3 the first Conv2d is
                      replaced by one with the same out channels, kernel, stride and padding.
                      Takes no model.* options (its dropout, where it has one, stays default).
    timm:NAME         timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...);
                      model.dropout becomes timm's drop_rate (before the classifier).

Each model is probed with one zero image of the data's size at build time, so a net that cannot
take that size (a ViT fixed at 224×224, say) fails here with its name, not at the first batch.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.errors import ConfigError


def builder(name: str) -> Callable[..., nn.Module]:
    """'torchvision:resnet18' -> builder(num_classes, in_channels, image_size[, dropout])."""
    source, _, model = name.partition(":")
    if source not in SOURCES:
        raise ConfigError(
            f"model.name = {name!r}: unknown model source {source!r}"
            f" (valid: {', '.join(f'{s}:NAME' for s in sorted(SOURCES))})"
        )
    if not model:
        raise ConfigError(f"model.name = {name!r}: expected {source}:NAME, e.g. {source}:resnet18")
    return SOURCES[source](name, model)


def _unknown(
    name: str, model: str, library: str, valid: list[str], key: str = "model.name"
) -> ConfigError:
    close = difflib.get_close_matches(model, valid, n=5, cutoff=0.5)
    hint = f"; close: {', '.join(close)}" if close else ""
    return ConfigError(f"{key} = {name!r}: {library} has no model {model!r}{hint}")


def _import(name: str, library: str, key: str = "model.name"):
    """The library module, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module(library)
    except ImportError:
        raise ConfigError(
            f"{key} = {name!r}: {library} is not installed (pip install {library})"
        ) from None


def probe(
    name: str,
    model: nn.Module,
    in_channels: int,
    image_size: tuple[int, int],
    key: str = "model.name",
) -> torch.Tensor:
    """The output for one zero image, in eval mode (BatchNorm statistics untouched), or a
    ConfigError naming `key` when the model cannot take images of that shape."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros(1, in_channels, *image_size))
    except (RuntimeError, ValueError, AssertionError) as e:  # torch/torchvision size checks
        raise ConfigError(
            f"{key} = {name!r}: cannot take {in_channels}×{image_size[0]}×{image_size[1]}"
            f" images ({' '.join(str(e).split())})"
        ) from None
    finally:
        model.train(was_training)


def torchvision_builder(name: str, model: str) -> Callable[..., nn.Module]:
    tv = _import(name, "torchvision")
    # classification models only: detection/segmentation/video ones do not return logits
    valid = tv.models.list_models(module=tv.models)
    if model not in valid:
        raise _unknown(name, model, "torchvision", valid)

    def build(num_classes: int, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
        net = tv.models.get_model(model, weights=None, num_classes=num_classes)
        if in_channels != 3:
            _replace_first_conv(name, net, in_channels)
        probe(name, net, in_channels, image_size)
        return net

    return build


def _replace_first_conv(name: str, net: nn.Module, in_channels: int) -> None:
    """Swaps the first Conv2d for one taking in_channels, same geometry and out channels."""
    path, old = next(
        ((p, m) for p, m in net.named_modules() if isinstance(m, nn.Conv2d)), ("", None)
    )
    if old is None or old.groups != 1:
        raise ConfigError(
            f"model.name = {name!r}: cannot adapt its first layer to {in_channels} input channels"
            " (set data.channels=3 instead)"
        )
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    parent, _, child = path.rpartition(".")
    setattr(net.get_submodule(parent), child, new)


def timm_builder(name: str, model: str) -> Callable[..., nn.Module]:
    timm = _import(name, "timm")
    valid = timm.list_models()
    if model not in valid:
        raise _unknown(name, model, "timm", valid)

    def build(
        num_classes: int, in_channels: int, image_size: tuple[int, int], dropout: float
    ) -> nn.Module:
        # drop_rate only when asked for: a few timm models do not accept it
        extra = {"drop_rate": dropout} if dropout > 0 else {}
        net = timm.create_model(
            model, pretrained=False, num_classes=num_classes, in_chans=in_channels, **extra
        )
        probe(name, net, in_channels, image_size)
        return net

    return build


SOURCES: dict[str, Callable[[str, str], Callable[..., nn.Module]]] = {
    "torchvision": torchvision_builder,
    "timm": timm_builder,
}
