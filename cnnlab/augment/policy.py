"""augment.train (a list of {op: NAME, **params}) -> one batch transform (x, y, gen) -> (x, y).

Pixel ops see only x; mixing ops (mixup, cutmix) also mix the targets, which then travel as
(B, K) class probabilities instead of (B,) labels. `random_subset` applies n of its listed ops
to each sample, RandAugment-style.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.augment.ops import OPS
from cnnlab.augment.registry import is_mixing
from cnnlab.errors import ConfigError
from cnnlab.registry import did_you_mean

# transform(x, y, gen) -> (x, y): x (B, C, H, W) float in [0, 1]; y (B,) int64 or (B, K) float.
BatchTransform = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]
Step = BatchTransform  # one list entry has the same shape as the whole pipeline

# random_subset's `magnitude` (0..10) sets each listed op's main strength to magnitude/10 of
# this maximum, as RandAugment does; ops not listed keep the parameters they were given.
MAGNITUDE_MAX: dict[str, tuple[str, float]] = {
    "rotate": ("degrees", 30.0),
    "translate": ("pixels", 8),
    "affine": ("degrees", 30.0),
    "color_jitter": ("brightness", 0.9),
    "solarize": ("threshold", 0.0),  # lower threshold: stronger
    "posterize": ("bits", 4),  # fewer bits: stronger (8 - magnitude/10 * 4)
    "sharpness": ("factor", 1.9),
    "noise": ("std", 0.2),
    "blur": ("kernel", 7),
    "cutout": ("size", 16),
}


def build_pipeline(
    specs: list[dict[str, Any]], num_classes: int, channels: int, image_size: tuple[int, int]
) -> BatchTransform | None:
    """None when there is nothing to do, so the loader skips the call entirely."""
    steps = [_step(f"augment.train[{i}]", spec) for i, spec in enumerate(specs)]
    if not steps:
        return None
    mixing = any(_mixes(spec) for spec in specs)

    def pipeline(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        if mixing and y.ndim == 1:
            y = F.one_hot(y, num_classes).float()  # mixing ops blend class probabilities
        for step in steps:
            x, y = step(x, y, gen)
        return x, y

    # Run once on a tiny batch so a bad value fails now, naming its op, not mid-training.
    probe = torch.Generator().manual_seed(0)
    labels = torch.arange(4) % num_classes
    for i, step in enumerate(steps):
        try:
            step(
                torch.rand(4, channels, *image_size), F.one_hot(labels, num_classes).float(), probe
            )
        except (ValueError, TypeError, RuntimeError) as e:
            raise ConfigError(f"augment.train[{i}] ({specs[i]['op']}): {e}") from None
    return pipeline


def _mixes(spec: dict[str, Any]) -> bool:
    return isinstance(spec, dict) and spec.get("op") in OPS and is_mixing(OPS.get(spec["op"]))


def _step(where: str, spec: dict[str, Any], magnitude: float | None = None) -> Step:
    """One list entry as a step (x, y, gen) -> (x, y), its names and values checked."""
    if not isinstance(spec, dict) or "op" not in spec:
        raise ConfigError(f"{where} = {spec!r}: expected a mapping with an 'op' key")
    params = {k: v for k, v in spec.items() if k != "op"}
    if spec["op"] == "random_subset":
        return _random_subset(where, **params)
    op = _lookup(where, spec["op"])
    params = _check_params(where, spec["op"], op, params)
    if magnitude is not None and spec["op"] in MAGNITUDE_MAX:
        params |= _at_magnitude(spec["op"], magnitude)
    bound = functools.partial(op, **params)
    if is_mixing(op):
        return bound
    return lambda x, y, gen: (bound(x, gen), y)


def _lookup(where: str, name: Any):
    if name in OPS:
        return OPS.get(name)
    names = sorted([*OPS.names(), "random_subset"])
    hint = did_you_mean(name, names) if isinstance(name, str) else ""
    raise ConfigError(
        f"{where}: unknown augmentation op {name!r}{hint} (valid: {', '.join(names)})"
    )


def _check_params(where: str, name: str, op, params: dict[str, Any]) -> dict[str, Any]:
    # Simple annotated parameters (bool/int/float/str) are type-checked here; the rest by the
    # probe run in build_pipeline.
    hints = typing.get_type_hints(op)
    allowed = [n for n in inspect.signature(op).parameters if n not in ("x", "y", "gen")]
    for key, value in params.items():
        if key not in allowed:
            raise ConfigError(
                f"{where}.{key}: unknown parameter of {name}{did_you_mean(key, allowed)}"
                f" (valid: {', '.join(allowed)})"
            )
        expected = hints.get(key)
        if expected in (bool, int, float, str) and not _fits(value, expected):
            raise ConfigError(f"{where}.{key} = {value!r}: expected {expected.__name__} for {name}")
    p = params.get("p", 0.0)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where} ({name}): p = {p!r}: expected a probability in [0, 1]")
    return params


def _fits(value: Any, expected: type) -> bool:
    """YAML gives bool, int, float, str: a bool is no number, an int may stand for a float."""
    if expected is bool or isinstance(value, bool):
        return type(value) is expected
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _at_magnitude(name: str, magnitude: float) -> dict[str, Any]:
    key, top = MAGNITUDE_MAX[name]
    m = magnitude / 10.0
    if name == "solarize":
        return {key: 1.0 - 0.5 * m}
    if name == "posterize":
        return {key: max(1, round(8 - m * top))}
    if name == "blur":
        return {key: 2 * round(m * (top - 1) / 2) + 1}  # odd, 1..top
    if isinstance(top, int):
        return {key: max(0, round(m * top))}
    return {key: m * top}


def _random_subset(where: str, ops: Any = None, n: Any = 2, magnitude: Any = None, **rest) -> Step:
    """Each sample gets `n` of `ops`, chosen independently per sample (RandAugment-style)."""
    if rest:
        unknown = next(iter(rest))
        raise ConfigError(
            f"{where}.{unknown}: unknown parameter of random_subset (valid: ops, n, magnitude)"
        )
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{where}.ops = {ops!r}: expected a non-empty list of ops")
    if type(n) is not int or not 1 <= n <= len(ops):
        raise ConfigError(f"{where}.n = {n!r}: expected an integer in [1, {len(ops)}]")
    if magnitude is not None and (isinstance(magnitude, bool) or not 0 <= magnitude <= 10):
        raise ConfigError(f"{where}.magnitude = {magnitude!r}: expected a number in [0, 10]")
    if any(_mixes(spec) for spec in ops):
        raise ConfigError(f"{where}.ops: mixup/cutmix mix whole batches; list them outside")
    steps = [_step(f"{where}.ops[{i}]", spec, magnitude) for i, spec in enumerate(ops)]

    def subset(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        # (B, m) random ranks; a sample takes the ops whose rank is below n.
        ranks = torch.rand(x.shape[0], len(steps), generator=gen, device=x.device).argsort(1)
        takes = ranks < n
        for j, step in enumerate(steps):
            index = torch.nonzero(takes[:, j]).flatten()
            if len(index):
                x = x.index_copy(0, index, step(x[index], y[index], gen)[0])
        return x, y

    return subset
