"""Models by name, their initialisation, and per-layer summaries."""

from __future__ import annotations

from torch import nn

from cnnlab.config.schema import ModelConfig
from cnnlab.models import cnn  # noqa: F401  (registers the built-in nets)
from cnnlab.models.init import initialize
from cnnlab.models.registry import MODELS
from cnnlab.models.summary import ModelSummary, summarize

__all__ = ["MODELS", "ModelSummary", "build", "summarize"]


def build(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: tuple[int, int]
) -> nn.Module:
    builder = MODELS.get(cfg.name)
    model = builder(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        width=cfg.width,
        dropout=cfg.dropout,
        activation=cfg.activation,
    )
    initialize(model, cfg.init)
    return model
