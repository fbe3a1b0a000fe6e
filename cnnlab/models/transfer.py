"""A trained net reused for new classes: input adapter -> backbone cut at a layer -> pool -> head.

model.backbone names a cnnlab run directory, a cnnlab checkpoint file (best.safetensors, whose
header records the run's config and data; last.ckpt; or either inside a run directory, whose
config.yaml and summary.json say the same), or torchvision:NAME / timm:NAME (pretrained weights
from the local cache, see models.hub). A cnnlab backbone is rebuilt from its own config, so a
transfer run can itself be a backbone.

The adapter lets the new data keep its own pipeline (normalised by its own statistics): on the
device it undoes that normalisation, repeats gray to RGB or mixes RGB to gray, resizes, and
normalises the way the backbone was trained. Cutting at a named layer uses torch.fx
(torchvision's create_feature_extractor), which keeps only the modules up to the cut, so the
rest of the backbone costs neither time nor parameters.

A frozen backbone has no gradients and stays in eval mode (BatchNorm statistics fixed) even
while the head trains, so its features do not depend on the batch and can be computed once.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.checkpoint import check_shape, load_into, load_state, load_weights, weights_about
from cnnlab.config import Config, load_config
from cnnlab.config.load import read_yaml_file
from cnnlab.config.schema import TransferConfig
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.models import hub
from cnnlab.models.summary import summarize

KEY = "model.backbone"
BEST = Path("checkpoints") / "best.safetensors"


class DataShape(Protocol):
    """What a model is built for (data.DatasetInfo is one): the images and their classes."""

    @property
    def num_classes(self) -> int: ...

    channels: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]


LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights: RGB -> gray, as PIL's convert("L")


@dataclass(frozen=True)
class Backbone:
    """A trained net and the input it was trained on."""

    name: str  # as given in model.backbone, for messages
    net: nn.Module  # the whole net, classifier included
    mean: tuple[float, ...]  # its input normalisation, on the [0, 1] pixel scale
    std: tuple[float, ...]
    channels: int
    image_size: tuple[int, int]  # (H, W) it was trained at


class InputAdapter(nn.Module):
    """(B, C_data, H, W) normalised by the data's statistics -> (B, C, *size) normalised by the
    backbone's."""

    def __init__(
        self,
        data: tuple[tuple[float, ...], tuple[float, ...], tuple[int, int]],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        size: tuple[int, int],
    ):
        """data: (mean, std, (H, W)) of the data's images; mean, std, size: the backbone's."""
        super().__init__()
        data_mean, data_std, data_size = data
        self.size = tuple(size)
        self.identity = (tuple(data_mean), tuple(data_std), tuple(data_size)) == (
            tuple(mean),
            tuple(std),
            self.size,
        )

        def column(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)

        self.register_buffer("data_mean", column(data_mean))
        self.register_buffer("data_std", column(data_std))
        self.register_buffer("mean", column(mean))
        self.register_buffer("std", column(std))
        self.register_buffer("luma", column(LUMA))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        x = x * self.data_std + self.data_mean  # back to [0, 1] pixels
        data_channels, channels = self.data_mean.shape[1], self.mean.shape[1]
        if data_channels == 1 and channels > 1:
            x = x.expand(-1, channels, -1, -1)
        elif data_channels == 3 and channels == 1:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != self.size:
            shrink = self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1]
            x = F.interpolate(
                x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return "identity" if self.identity else f"size={self.size}"


class Pool(nn.Module):
    """A cut's output -> (B, D) vectors: feature maps (B, C, H, W) pooled to pool_size² per
    channel (avgmax: both, concatenated, as fastai's AdaptiveConcatPool) or flattened; tokens
    (B, N, D) pooled over N; vectors (B, D) pass through."""

    def __init__(self, kind: str, size: int):
        super().__init__()
        self.kind, self.size = kind, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 or self.kind == "flatten":
            return x.flatten(1)
        if x.ndim == 3:  # tokens
            avg, top = x.mean(dim=1), x.amax(dim=1)
        else:
            avg = F.adaptive_avg_pool2d(x, self.size).flatten(1)
            top = F.adaptive_max_pool2d(x, self.size).flatten(1)
        if self.kind == "avgmax":
            return torch.cat([avg, top], dim=1)
        return avg if self.kind == "avg" else top

    def extra_repr(self) -> str:
        return f"{self.kind}, size={self.size}"


def head(in_features: int, num_classes: int, cfg: TransferConfig) -> nn.Sequential:
    """linear: [dropout] linear; mlp: ([dropout] linear relu) per hidden width, then the same."""
    layers: list[nn.Module] = []
    dropout = [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []
    for width in cfg.hidden if cfg.head == "mlp" else []:
        layers += [*dropout, nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    return nn.Sequential(*layers, *dropout, nn.Linear(in_features, num_classes))


class TransferNet(nn.Module):
    def __init__(self, adapter: InputAdapter, backbone: nn.Module, pool: Pool, head: nn.Module):
        super().__init__()
        self.adapter, self.backbone, self.pool, self.head = adapter, backbone, pool, head
        self.frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images as the data pipeline gives them -> (B, D) head inputs."""
        return self.pool(self.backbone(self.adapter(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def freeze(self, frozen: bool = True) -> TransferNet:
        """Frozen: no gradients for the backbone and its BatchNorm statistics fixed."""
        self.frozen = frozen
        self.backbone.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self


def from_config(config: Config, data: DataShape, weights: bool = True) -> TransferNet:
    """config.model.backbone cut and given a head for `data`, unfrozen (freezing is training
    policy: training.finetune)."""
    cfg = config.transfer
    source = load_backbone(config.model.backbone, weights and cfg.pretrained)
    if cfg.input_size is not None:
        size = (cfg.input_size, cfg.input_size)
    elif hub.is_hub_name(config.model.backbone):
        size = data.image_size  # ImageNet nets take any size; 224 px would cost (224/28)² more
    else:
        size = source.image_size  # a cnnlab net: the size it learned its filters at
    return build(
        source, cfg, data.num_classes, data=(data.mean, data.std, data.image_size), input_size=size
    )


def build(
    source: Backbone,
    cfg: TransferConfig,
    num_classes: int,
    data: tuple[tuple[float, ...], tuple[float, ...], tuple[int, int]],
    input_size: tuple[int, int],
) -> TransferNet:
    """The backbone cut at cfg.layer with an adapter from the data (its mean, std, (H, W)) and a
    fresh head; unfrozen (the caller freezes it as the config says)."""
    data_channels = len(data[0])
    if (data_channels, source.channels) not in ((1, 1), (3, 3), (1, 3), (3, 1)):
        raise ConfigError(
            f"{KEY} = {source.name!r}: takes {source.channels}-channel images, the data"
            f" has {data_channels} (expected 1 or 3 either side)"
        )
    adapter = InputAdapter(data, source.mean, source.std, input_size)
    input_shape = (source.channels, *input_size)
    backbone = cut(source, cfg.layer, input_shape)
    probe = hub.probe(source.name, backbone, source.channels, input_size, KEY)
    if probe.ndim == 2 and (cfg.pool, cfg.pool_size) != ("avg", 1):
        raise ConfigError(
            f"transfer.pool = {cfg.pool!r}, pool_size = {cfg.pool_size}: the cut at"
            f" transfer.layer = {cfg.layer!r} gives vectors ({probe.shape[1]},), nothing to pool"
        )
    pool = Pool(cfg.pool, cfg.pool_size)
    features = pool(probe).shape[1]
    return TransferNet(adapter, backbone, pool, head(features, num_classes, cfg))


def cut(source: Backbone, layer: str | int | None, input_shape: tuple[int, int, int]) -> nn.Module:
    """The backbone up to and including `layer` (None: up to its last linear layer's input)."""
    net = source.net
    if layer is None:
        linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(
                f"{KEY} = {source.name!r}: no linear classifier to cut off;"
                " set transfer.layer to a module name or row of `cnnlab summary`"
            )
        parent, _, child = linears[-1].rpartition(".")
        setattr(net.get_submodule(parent), child, nn.Identity())
        return net
    name = layer_name(source, layer, input_shape)
    from torchvision.models.feature_extraction import create_feature_extractor

    try:
        extractor = create_feature_extractor(net, return_nodes={name: "features"})
    except Exception as e:  # torch.fx raises many kinds on untraceable code
        raise ConfigError(
            f"transfer.layer = {layer!r}: cannot cut {source.name!r} there with torch.fx"
            f" ({type(e).__name__}: {e}); cut at another layer or leave transfer.layer unset"
        ) from None
    return _Features(extractor)


def layer_name(source: Backbone, layer: str | int, input_shape: tuple[int, int, int]) -> str:
    """transfer.layer as a module name: a row number of the summary table becomes its name."""
    if isinstance(layer, int):
        rows = summarize(source.net, input_shape).rows
        if not -len(rows) <= layer < len(rows):
            raise ConfigError(
                f"transfer.layer = {layer}: {source.name!r} has {len(rows)} layers in"
                f" `cnnlab summary` (expected -{len(rows)}..{len(rows) - 1})"
            )
        return rows[layer].name
    names = [n for n, _ in source.net.named_modules() if n]
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
        hint = f"; close: {', '.join(close)}" if close else f"; e.g. {', '.join(names[:4])}"
        raise ConfigError(
            f"transfer.layer = {layer!r}: {source.name!r} has no such module"
            f" (names as in `cnnlab summary`){hint}"
        )
    return layer


class _Features(nn.Module):
    """create_feature_extractor's dict output as the one tensor it holds."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)["features"]


def load_backbone(spec: str, weights: bool = True) -> Backbone:
    """model.backbone -> the whole trained net and the input it was trained on."""
    if hub.is_hub_name(spec):
        net = hub.load_pretrained(spec, weights)
        return Backbone(spec, net.net, net.mean, net.std, net.channels, net.image_size)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / BEST
        if not path.is_file():
            raise ConfigError(f"{KEY} = {spec!r}: no {BEST} in it (no epoch finished?)")
    elif not path.is_file():
        raise ConfigError(
            f"{KEY} = {spec!r}: no such run directory or checkpoint file (expected one of those,"
            f" or {' / '.join(f'{s}:NAME' for s in hub.HUBS)})"
        )
    try:
        return _cnnlab_backbone(spec, path, weights)
    except CheckpointError as e:
        # the file's path once: as the value given, or (a run directory given) in the message
        named = str(e).removeprefix(f"{path}: ") if Path(spec).expanduser() == path else e
        raise ConfigError(f"{KEY} = {spec!r}: {named}") from None


# What _Trained reads from a data record (checkpoint.check_shape): a damaged one is one line.
RECORD_SHAPE = {
    "classes": list,
    "channels": int,
    "image_size": list[int],
    "mean": list[float],
    "std": list[float],
}


@dataclass(frozen=True)
class _Trained:
    """A cnnlab net's data record (summary.json's "data"): the DataShape it was trained for."""

    record: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.record["classes"])

    @property
    def channels(self) -> int:
        return int(self.record["channels"])

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.record["image_size"])

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.record["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.record["std"])


def _cnnlab_backbone(spec: str, path: Path, weights: bool) -> Backbone:
    """A cnnlab checkpoint file -> the net it belongs to (rebuilt from its own config, so it may
    itself be a transfer net), with those weights."""
    from cnnlab.models import build  # the package's builder; imported here, as it imports this

    if path.suffix == ".ckpt":
        state = load_state(path, {"config": dict, "model": dict})
        about, tensors = {"config": state["config"], "data": state.get("data")}, state["model"]
    else:
        about, tensors = weights_about(path), load_weights(path) if weights else None
    config_dict, record = about.get("config"), about.get("data")
    # each may be missing (then read from the run directory around the file), not malformed
    check_shape(about, {k: dict | None for k in ("config", "data") if k in about}, path)
    if config_dict is None or record is None:
        config_dict, record = _from_run_dir(path, config_dict, record)
    if config_dict is None:
        raise ConfigError(
            f"{KEY} = {spec!r}: not a cnnlab checkpoint (no config in it and no run directory"
            f" around it); for torchvision or timm weights use"
            f" {' / '.join(f'{s}:NAME' for s in hub.HUBS)}"
        )
    if record is None:
        raise ConfigError(
            f'{KEY} = {spec!r}: its run records no data shape (summary.json has no "data":'
            " made by a cnnlab before transfer learning); train it again to reuse it"
        )
    trained = _trained(record, path)
    try:
        net = build(load_config(base=config_dict), trained, weights=False)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config: {e}") from None
    if tensors is not None:
        load_into(net, tensors, path)
    return Backbone(spec, net, trained.mean, trained.std, trained.channels, trained.image_size)


def _trained(record: Any, path: Path) -> _Trained:
    """A data record read from `path`, checked to describe images a net can be built for."""
    check_shape(record, RECORD_SHAPE, path, "data.")
    trained = _Trained(record)
    c, size = trained.channels, trained.image_size
    if c < 1 or len(size) != 2 or min(size) < 1 or not len(trained.mean) == len(trained.std) == c:
        raise CheckpointError(
            f"{path}: damaged header (data: {c} channels of {list(size)} px with"
            f" {len(trained.mean)} means and {len(trained.std)} stds)"
        )
    return trained


def _from_run_dir(
    path: Path, config: dict[str, Any] | None, record: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Checkpoints older than the header record: config.yaml and summary.json's data around them."""
    if path.parent.name != "checkpoints":
        return config, record
    run_dir = path.parent.parent
    try:
        if config is None and (run_dir / "config.yaml").is_file():
            config = read_yaml_file(run_dir / "config.yaml")
        if record is None and (run_dir / "summary.json").is_file():
            record = json.loads((run_dir / "summary.json").read_text()).get("data")
    except (CnnlabError, OSError, ValueError, AttributeError):
        pass  # an unreadable run directory: the checkpoint alone decides
    return config, record
