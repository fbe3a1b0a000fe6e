"""model.name -> builder(num_classes, in_channels, image_size, **options) -> nn.Module.

A builder names, as keyword parameters without defaults, the model.* options it uses
(width, dropout, activation, separable, se, stages, ...); models.build passes exactly those,
so every default stays declared once, in the config schema."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.registry import Registry

Builder = Callable[..., nn.Module]

MODELS: Registry[Builder] = Registry("model", "model.name")
register_model = MODELS.register
