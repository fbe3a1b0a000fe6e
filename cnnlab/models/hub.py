"""Models from torchvision and timm, by name: untrained classifiers (model.name = torchvision:NAME
or timm:NAME) and pretrained backbones (model.backbone = torchvision:NAME or timm:NAME). Every
name is looked up and validated here, once.

Untrained (`builder`): weights are never downloaded (weights=None, pretrained=False), so building
works offline and gives the same net every time.

    torchvision:NAME  torchvision.models.get_model(NAME, weights=None, num_classes=...); the
                      classification models only. When in_channels != 3 the first Conv2d is
                      replaced by one with the same out channels, kernel, stride and padding.
                      Takes no model.* options (its dropout, where it has one, stays default).
    timm:NAME         timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...);
                      model.dropout becomes timm's drop_rate (before the classifier).

Each model is probed with one zero image of the data's size at build time, so a net that cannot
take that size (a ViT fixed at 224×224, say) fails here with its name, not at the first batch.

Pretrained (`load_pretrained`): the library's full net (its ImageNet head kept, train mode, on
CPU) and the input those weights expect: mean/std on the [0, 1] pixel scale, channels, training
size. The weights live where the libraries cache them, so a file either of them fetched is reused:

    torchvision:NAME  torch.hub.get_dir()/checkpoints/<file name of the weights' url>
                      ($TORCH_HOME/hub, ~/.cache/torch/hub by default)
    timm:NAME         the Hugging Face hub cache: $HF_HUB_CACHE/models--timm--ARCH.TAG
                      ($HF_HOME/hub, ~/.cache/huggingface/hub by default); the few timm weights
                      published only at a url go to torch's checkpoints folder instead

Offline rule: cached weights load without touching the network; missing ones are downloaded for
real when the network is up, and when it is not (or HF_HUB_OFFLINE=1) the ConfigError names the
cache path and how to fetch them once. Downloads are written under a temporary name and renamed
when complete, so an interrupted one never leaves a torn file at the cache path.

load_pretrained(name, weights=False) builds the same architecture, untrained, with the same
metadata, and touches neither the cache nor the network: a finished run has its own weights.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from cnnlab.errors import ConfigError

HUBS = ("torchvision", "timm")  # the libraries a name may come from: "torchvision:resnet18"
KEY = "model.backbone"  # pretrained weights are asked for there
# A failed download: URLError, socket errors, timeouts and huggingface_hub's LocalEntryNotFoundError
# are OSErrors; a body cut short is an HTTPException.
DOWNLOAD_ERRORS = (OSError, HTTPException)


def is_hub_name(name: str) -> bool:
    return name.partition(":")[0] in HUBS


def split(name: str, key: str = "model.name") -> tuple[str, str]:
    """'torchvision:resnet18' -> ('torchvision', 'resnet18'), or a ConfigError naming `key`."""
    source, _, model = name.partition(":")
    if source not in HUBS:
        what = "pretrained" if key == KEY else "model"
        raise ConfigError(
            f"{key} = {name!r}: unknown {what} source {source!r}"
            f" (valid: {', '.join(f'{s}:NAME' for s in sorted(HUBS))})"
        )
    if not model:
        raise ConfigError(f"{key} = {name!r}: expected {source}:NAME, e.g. {source}:resnet18")
    return source, model


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


def _torchvision_classifier(name: str, model: str, key: str):
    """torchvision, after checking that `model` is one of its classifiers (detection,
    segmentation and video models do not return logits)."""
    tv = _import(name, "torchvision", key)
    valid = tv.models.list_models(module=tv.models)
    if model not in valid:
        raise _unknown(name, model, "torchvision", valid, key)
    return tv


def _timm_model(name: str, model: str, key: str):
    """timm, after checking that `model` names one of its architectures (with or without a
    pretrained tag: resnet18, resnet18.a1_in1k)."""
    timm = _import(name, "timm", key)
    valid = timm.list_models()
    if model.partition(".")[0] not in valid:
        tagged = timm.list_pretrained() if key == KEY else []  # close matches with their tags
        raise _unknown(name, model, "timm", valid + tagged, key)
    return timm


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


# ---------------------------------------------------------------- untrained, by model.name


def builder(name: str) -> Callable[..., nn.Module]:
    """'torchvision:resnet18' -> builder(num_classes, in_channels, image_size[, dropout])."""
    source, model = split(name)
    return (torchvision_builder if source == "torchvision" else timm_builder)(name, model)


def torchvision_builder(name: str, model: str) -> Callable[..., nn.Module]:
    tv = _torchvision_classifier(name, model, "model.name")

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
    timm = _timm_model(name, model, "model.name")

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


# ---------------------------------------------------------------- pretrained, by model.backbone


@dataclass(frozen=True)
class Pretrained:
    net: nn.Module  # the library's full classifier, pretrained weights loaded, train mode, CPU
    mean: tuple[float, ...]  # normalisation the weights expect, on the [0, 1] pixel scale
    std: tuple[float, ...]
    channels: int  # input channels the weights expect
    image_size: tuple[int, int]  # the size they were trained at


def load_pretrained(name: str, weights: bool = True) -> Pretrained:
    """name: 'torchvision:NAME' or 'timm:NAME'. weights=False: the same architecture and
    metadata, untrained, without touching the cache or the network."""
    source, model = split(name, KEY)
    net, mean, std, channels, size = _LOADERS[source](name, model, weights)
    return Pretrained(net.cpu().train(), tuple(mean), tuple(std), channels, size)


def cache_location(name: str) -> Path:
    """Where the weights file (torchvision) or hub folder (timm) is, or would be, cached."""
    source, model = split(name, KEY)
    if source == "torchvision":
        return _tv_path(_tv_weights(name, model))
    return _timm_path(_timm_cfg(name, model))


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__  # one line, never empty


def _torchvision(name: str, model: str, weights: bool):
    tv = _import(name, "torchvision", KEY)
    found = _tv_weights(name, model)
    if weights:
        path = _tv_path(found)
        if not path.exists():
            _fetch(name, model, found.url, path)
        net = _tv_load(name, tv, model, found, path)
    else:
        net = _tv_untrained(tv, model, found)
    t = found.transforms()
    return net, t.mean, t.std, 3, (t.crop_size[0], t.crop_size[-1])


def _tv_weights(name: str, model: str):
    tv = _torchvision_classifier(name, model, KEY)
    default = getattr(tv.models.get_model_weights(model), "DEFAULT", None)
    if default is None:
        raise ConfigError(f"{KEY} = {name!r}: torchvision has no pretrained weights for {model!r}")
    return default


def _tv_path(weights) -> Path:
    # the path torchvision's own loader (torch.hub.load_state_dict_from_url) uses
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _download(url: str, path: Path) -> None:
    """url -> path (tests replace this). torch.hub writes a temporary file beside path and
    renames it only when complete and, where the file name carries a hash, when that matches."""
    digest = torch.hub.HASH_REGEX.search(path.name)
    torch.hub.download_url_to_file(
        url, str(path), digest.group(1) if digest else None, progress=sys.stderr.isatty()
    )


def _fetch(name: str, model: str, url: str, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(url, path)
    except (*DOWNLOAD_ERRORS, RuntimeError) as e:  # RuntimeError: the hash in the name differs
        fetch = f"import torchvision; torchvision.models.get_model({model!r}, weights='DEFAULT')"
        raise ConfigError(
            f"{KEY} = {name!r}: pretrained weights are not in the local cache ({path}) and could"
            f" not be downloaded ({_reason(e)}); download them once with network access"
            f' (python -c "{fetch}") or copy {path.name} into {path.parent}'
        ) from None


def _tv_load(name: str, tv, model: str, weights, path: Path) -> nn.Module:
    try:
        # weights_only admits nothing but tensors and plain containers, so the file is known to
        # be safe before torchvision's loader unpickles it again without that restriction
        torch.load(path, map_location="cpu", weights_only=True)
        # torchvision's builder reads this cached file (present, so no download) and applies its
        # per-model fix-ups: densenet's old key names, googlenet's aux heads, vit's image size
        return tv.models.get_model(model, weights=weights)
    except Exception as e:  # torn, foreign or another model's: whatever fails, the file is bad
        raise ConfigError(
            f"{KEY} = {name!r}: the cached weights file {path} does not load ({_reason(e)});"
            " delete it to download it again"
        ) from None


def _tv_untrained(tv, model: str, weights) -> nn.Module:
    """get_model(weights=None) with the arguments torchvision's builders set when given weights
    (their _ovewrite_named_param calls), so the net has the pretrained one's exact shape."""
    kwargs = {}
    if model in ("googlenet", "inception_v3"):
        # pretrained, they re-normalise their input; googlenet then drops its aux heads
        aux = model == "inception_v3"
        kwargs = {"transform_input": True, "aux_logits": aux, "init_weights": False}
    elif model.startswith("vit_"):
        kwargs = {"image_size": weights.meta["min_size"][0]}
    elif model.startswith("maxvit_"):
        kwargs = {"input_size": weights.meta["min_size"]}
    return tv.models.get_model(model, weights=None, **kwargs)


def _timm(name: str, model: str, weights: bool):
    timm = _import(name, "timm", KEY)
    cfg = _timm_cfg(name, model)
    if not weights:
        net = timm.create_model(model, pretrained=False)
    else:
        try:
            net = timm.create_model(model, pretrained=True)
        except DOWNLOAD_ERRORS as e:
            fetch = f"import timm; timm.create_model({model!r}, pretrained=True)"
            path = _timm_path(cfg)
            raise ConfigError(
                f"{KEY} = {name!r}: pretrained weights are not in the local cache ({path}) and"
                f" could not be downloaded ({_reason(e)}); download them once with network"
                f' access (python -c "{fetch}") or copy {path.name} into {path.parent}'
            ) from None
        except Exception as e:  # a torn or foreign file in the cache
            raise ConfigError(
                f"{KEY} = {name!r}: the cached weights in {_timm_path(cfg)} do not load"
                f" ({_reason(e)}); delete them to download them again"
            ) from None
    data = net.pretrained_cfg
    channels, height, width = data["input_size"]
    return net, data["mean"], data["std"], channels, (height, width)


def _timm_cfg(name: str, model: str):
    timm = _timm_model(name, model, KEY)
    try:
        cfg = timm.get_pretrained_cfg(model)  # the default tag's when the name has none
    except RuntimeError:  # a known architecture, but not with this tag
        cfg = None
    if cfg is None or not timm.is_model_pretrained(model):
        tags = timm.list_pretrained(f"{model.partition('.')[0]}.*")
        known = f" (pretrained: {', '.join(tags[:8])})" if tags else ""
        raise ConfigError(f"{KEY} = {name!r}: timm has no pretrained weights for {model!r}{known}")
    return cfg


def _timm_path(cfg) -> Path:
    """Where timm looks: the hub repo folder when hf_hub_id is set (timm prefers the hub)."""
    if cfg.hf_hub_id:
        # read now, not at import: tests and users may point HF_HUB_CACHE elsewhere after import
        from huggingface_hub import constants

        repo = cfg.hf_hub_id.partition("@")[0]  # "timm/resnet18.a1_in1k@revision"
        return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)


_LOADERS = {"torchvision": _torchvision, "timm": _timm}
