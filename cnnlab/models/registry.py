"""model.name -> builder(num_classes, in_channels, image_size, width, dropout, activation)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.registry import Registry

Builder = Callable[..., nn.Module]

MODELS: Registry[Builder] = Registry("model", "model.name")
register_model = MODELS.register
