"""model.backbone = torchvision:NAME / timm:NAME: a library classifier with its pretrained weights.

load_pretrained(name) gives the library's full net (its ImageNet head kept, train mode, on CPU)
and the input those weights expect: mean/std on the [0, 1] pixel scale, channels, training size.

The weights live where the libraries cache them, so a file either of them fetched is reused:

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

import os
import sys
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.external import _import, _unknown

KEY = "model.backbone"
# A failed download: URLError, socket errors, timeouts and huggingface_hub's LocalEntryNotFoundError
# are OSErrors; a body cut short is an HTTPException.
DOWNLOAD_ERRORS = (OSError, HTTPException)


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
    source, model = _split(name)
    net, mean, std, channels, size = _LOADERS[source](name, model, weights)
    return Pretrained(net.cpu().train(), tuple(mean), tuple(std), channels, size)


def cache_location(name: str) -> Path:
    """Where the weights file (torchvision) or hub folder (timm) is, or would be, cached."""
    source, model = _split(name)
    if source == "torchvision":
        return _tv_path(_tv_weights(name, model))
    return _timm_path(_timm_cfg(name, model))


def _split(name: str) -> tuple[str, str]:
    source, _, model = name.partition(":")
    if source not in _LOADERS:
        raise ConfigError(
            f"{KEY} = {name!r}: unknown pretrained source {source!r}"
            " (valid: torchvision:NAME, timm:NAME)"
        )
    if not model:
        raise ConfigError(f"{KEY} = {name!r}: expected {source}:NAME, e.g. {source}:resnet18")
    return source, model


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
    tv = _import(name, "torchvision", KEY)
    valid = tv.models.list_models(module=tv.models)  # classifiers only, as in external.py
    if model not in valid:
        raise _unknown(name, model, "torchvision", valid, KEY)
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
    timm = _import(name, "timm", KEY)
    if not timm.is_model(model):
        raise _unknown(name, model, "timm", timm.list_models() + timm.list_pretrained(), KEY)
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
