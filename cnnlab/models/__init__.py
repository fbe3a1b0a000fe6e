"""Models: build(config, data) is the one builder of a run's network (model.name from scratch, or
model.backbone cut and given a new head); create() makes a registered architecture by name; plus
initialisation and per-layer summaries."""

from __future__ import annotations

import inspect

from torch import nn

from cnnlab.config.schema import Config, ModelConfig, TransferConfig
from cnnlab.errors import ConfigError
from cnnlab.models import cnn, fastnet, hub, resnet, spec, transfer, vgg, wrn  # noqa: F401
from cnnlab.models.footprint import Footprint, measure
from cnnlab.models.init import initialize
from cnnlab.models.registry import MODELS
from cnnlab.models.summary import ModelSummary, summarize
from cnnlab.models.transfer import DataShape, TransferNet

__all__ = [
    "MODELS",
    "DataShape",
    "Footprint",
    "ModelSummary",
    "TransferNet",
    "build",
    "create",
    "footprint",
    "summarize",
]


COMMON = ("name", "init")  # handled here, never passed to a builder


def build(config: Config, data: DataShape, weights: bool = True) -> nn.Module:
    """The run's network for `data`: model.name from scratch, or a TransferNet around
    model.backbone (unfrozen: freezing is training policy). weights=False: a transfer net's
    architecture only, for weights loaded right after (a finished run's best.safetensors); the
    backbone's own weights are then not read."""
    _check_keys(config)
    if config.model.backbone is None:
        return create(config.model, data.num_classes, data.channels, data.image_size)
    return transfer.from_config(config, data, weights)


def footprint(config: Config, data: DataShape, value_bytes: int = 4) -> Footprint | None:
    """The least memory training `config`'s network on `data` needs (models.footprint), counted
    without allocating it. None for a transfer net: its backbone already trained at that size,
    and its head is small."""
    _check_keys(config)
    if config.model.backbone is not None:
        return None
    shape = (data.channels, *data.image_size)
    return measure(
        lambda: create(config.model, data.num_classes, data.channels, data.image_size),
        shape,
        config.train.batch_size,
        value_bytes,
    )


def _check_keys(config: Config) -> None:
    """transfer.* needs a backbone; with one, the other model.* keys would be ignored."""
    if config.model.backbone is None:
        changed = _changed(config.transfer, TransferConfig)
        if changed:
            raise ConfigError(
                f"transfer.{changed[0]} is set but model.backbone is not: transfer keys describe"
                " how a backbone is reused (model.backbone=RUN_DIR, torchvision:NAME, ...)"
            )
        return
    changed = [k for k in _changed(config.model, ModelConfig) if k != "backbone"]
    if changed:
        raise ConfigError(
            f"model.{changed[0]} = {getattr(config.model, changed[0])!r}: with model.backbone"
            " the backbone decides the architecture (unset it, or drop model.backbone)"
        )


def _changed(section, kind: type) -> list[str]:
    """The keys of a config section whose value differs from the schema's default."""
    fields = kind.model_fields
    return [k for k in fields if getattr(section, k) != fields[k].get_default()]


def create(
    cfg: ModelConfig, num_classes: int, in_channels: int, image_size: tuple[int, int]
) -> nn.Module:
    """A registered architecture (or torchvision:/timm: name) with fresh weights, given the
    data's shape and the model options it names."""
    builder = hub.builder(cfg.name) if ":" in cfg.name else MODELS.get(cfg.name)
    takes = set(inspect.signature(builder).parameters)
    # A resolved config.yaml lists every option, so what matters is a value that differs from
    # its default: that is a choice the chosen model would silently ignore.
    changed = set(_changed(cfg, ModelConfig))
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
