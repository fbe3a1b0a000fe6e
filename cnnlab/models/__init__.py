"""Models by name, their initialisation, and per-layer summaries."""

from __future__ import annotations

import inspect

from torch import nn

from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import cnn, external, fastnet, resnet, spec, vgg, wrn  # noqa: F401  (registers them)
from cnnlab.models.init import initialize
from cnnlab.models.registry import MODELS
from cnnlab.models.summary import ModelSummary, summarize

__all__ = ["MODELS", "ModelSummary", "build", "summarize"]


COMMON = ("name", "init")  # handled here, never passed to a builder


def build(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: tuple[int, int]
) -> nn.Module:
    """The registered builder, given the data's shape and the model options it names."""
    builder = external.builder(cfg.name) if ":" in cfg.name else MODELS.get(cfg.name)
    takes = set(inspect.signature(builder).parameters)
    # A resolved config.yaml lists every option, so what matters is a value that differs from
    # its default: that is a choice the chosen model would silently ignore.
    fields = ModelConfig.model_fields
    changed = {k for k in fields if getattr(cfg, k) != fields[k].get_default()}
    for key in sorted(changed - takes - set(COMMON)):
        options = sorted(takes & set(ModelConfig.model_fields))
        raise ConfigError(
            f"model.{key} is not an option of model {cfg.name!r}"
            f" (its options: {', '.join(options) or 'none'})"
        )
    options = {k: getattr(cfg, k) for k in takes if k in ModelConfig.model_fields}
    model = builder(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options
    )
    initialize(model, cfg.init)
    return model
