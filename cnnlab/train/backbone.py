"""The run's model: model.name from scratch, or a TransferNet around model.backbone.

model.backbone names a cnnlab run directory, a cnnlab checkpoint file (best.safetensors, whose
header records the run's config and data since this version; last.ckpt; or either inside a run
directory, whose config.yaml and summary.json say the same), or torchvision:NAME / timm:NAME
(pretrained weights from the local cache, see models.pretrained). A cnnlab backbone is rebuilt
from its own config, so a transfer run can itself be a backbone.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab import data, models
from cnnlab.config import Config, load_config
from cnnlab.config.schema import ModelConfig, TransferConfig
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.models.pretrained import load_pretrained
from cnnlab.models.transfer import Backbone, TransferNet
from cnnlab.models.transfer import build as build_transfer
from cnnlab.track.registry import load_run
from cnnlab.train.checkpoint import load_state, load_weights, weights_about

HUB_SOURCES = ("torchvision", "timm")
BEST = Path("checkpoints") / "best.safetensors"


def build_model(config: Config, info: data.DatasetInfo, weights: bool = True) -> nn.Module:
    """weights=False: a transfer net's architecture only, for weights loaded right after (a
    finished run's best.safetensors); the backbone's own weights are then not read."""
    _check_keys(config)
    if config.model.backbone is None:
        return models.build(config.model, info.num_classes, info.channels, info.image_size)
    cfg = config.transfer
    source = load_backbone(config.model.backbone, weights and cfg.pretrained)
    if cfg.input_size is not None:
        size = (cfg.input_size, cfg.input_size)
    elif config.model.backbone.partition(":")[0] in HUB_SOURCES:
        size = info.image_size  # ImageNet nets take any size; 224 px would cost (224/28)² more
    else:
        size = source.image_size  # a cnnlab net: the size it learned its filters at
    data = (info.mean, info.std, info.image_size)
    net = build_transfer(source, cfg, info.num_classes, data=data, input_size=size)
    return net.freeze(cfg.freeze)


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
    cfg = config.transfer
    if cfg.unfreeze_after is not None and not cfg.freeze:
        raise ConfigError(
            "transfer.unfreeze_after is set but transfer.freeze is false: nothing to unfreeze"
        )
    if cfg.unfreeze_after is not None and cfg.unfreeze_after >= config.train.epochs:
        raise ConfigError(
            f"transfer.unfreeze_after = {cfg.unfreeze_after}: the run has train.epochs ="
            f" {config.train.epochs}, so the backbone would never train (expected fewer epochs)"
        )


def _changed(section: Any, kind: type) -> list[str]:
    fields = kind.model_fields
    return [k for k in fields if getattr(section, k) != fields[k].get_default()]


def load_backbone(spec: str, weights: bool = True) -> Backbone:
    source = spec.partition(":")[0]
    if source in HUB_SOURCES:
        hub = load_pretrained(spec, weights)
        return Backbone(spec, hub.net, hub.mean, hub.std, hub.channels, hub.image_size)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / BEST
        if not path.is_file():
            raise ConfigError(f"model.backbone = {spec!r}: no {BEST} in it (no epoch finished?)")
    elif not path.is_file():
        raise ConfigError(
            f"model.backbone = {spec!r}: no such run directory or checkpoint file (expected one"
            f" of those, or {' / '.join(f'{s}:NAME' for s in HUB_SOURCES)})"
        )
    try:
        return _cnnlab_backbone(spec, path, weights)
    except CheckpointError as e:
        raise ConfigError(f"model.backbone = {spec!r}: {e}") from None


def _cnnlab_backbone(spec: str, path: Path, weights: bool) -> Backbone:
    """A cnnlab checkpoint file -> the net it belongs to, with those weights."""
    if path.suffix == ".ckpt":
        state = load_state(path)
        about, tensors = {"config": state["config"], "data": state.get("data")}, state["model"]
    else:
        about, tensors = weights_about(path), load_weights(path) if weights else None
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    config_dict, record = about.get("config"), about.get("data")
    if (config_dict is None or record is None) and run_dir is not None:
        try:
            run = load_run(run_dir)
        except CnnlabError:
            run = None
        if run is not None:
            config_dict, record = config_dict or run.config, record or run.summary.get("data")
    if config_dict is None:
        raise ConfigError(
            f"model.backbone = {spec!r}: not a cnnlab checkpoint (no config in it and no run"
            f" directory around it); for torchvision or timm weights use"
            f" {' / '.join(f'{s}:NAME' for s in HUB_SOURCES)}"
        )
    config = load_config(base=config_dict)
    # Runs older than the data record: measure the source's data again (it must still exist).
    info = info_from_record(record) if record else data.build(config.data).info
    net = build_model(config, info, weights=False)
    if tensors is not None:
        try:
            net.load_state_dict(tensors)
        except RuntimeError as e:
            raise ConfigError(
                f"model.backbone = {spec!r}: its weights do not fit the model its config builds"
                f" ({str(e).splitlines()[0]})"
            ) from None
    return Backbone(spec, net, info.mean, info.std, info.channels, info.image_size)


def info_record(info: data.DatasetInfo) -> dict[str, Any]:
    """What a later run needs to reuse a net trained on this data: classes, shape, statistics."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(info).items()}


def info_from_record(record: dict[str, Any]) -> data.DatasetInfo:
    return data.DatasetInfo(
        name=record["name"],
        classes=tuple(record["classes"]),
        channels=int(record["channels"]),
        image_size=tuple(record["image_size"]),
        mean=tuple(record["mean"]),
        std=tuple(record["std"]),
    )


__all__ = ["TransferNet", "build_model", "info_from_record", "info_record", "load_backbone"]
