"""augment.train (a list of {op: NAME, **params}) -> one batch transform (x, gen) -> x."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import torch

from cnnlab.augment.ops import OPS
from cnnlab.errors import ConfigError
from cnnlab.registry import did_you_mean

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def build_pipeline(
    specs: list[dict[str, Any]], channels: int, image_size: tuple[int, int]
) -> BatchTransform | None:
    """None when there is nothing to do, so evaluation-style batches skip the call entirely."""
    ops = [_bind(i, spec) for i, spec in enumerate(specs)]
    if not ops:
        return None

    def pipeline(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for op in ops:
            x = op(x, gen)
        return x

    # Run once on a tiny batch so a bad value fails now, naming its op, not mid-training.
    probe = torch.Generator().manual_seed(0)
    for i, op in enumerate(ops):
        try:
            op(torch.rand(2, channels, *image_size), probe)
        except (ValueError, TypeError, RuntimeError) as e:
            raise ConfigError(f"augment.train[{i}] ({specs[i]['op']}): {e}") from None
    return pipeline


def _bind(index: int, spec: dict[str, Any]):
    where = f"augment.train[{index}]"
    if not isinstance(spec, dict) or "op" not in spec:
        raise ConfigError(f"{where} = {spec!r}: expected a mapping with an 'op' key")
    params = {k: v for k, v in spec.items() if k != "op"}
    try:
        op = OPS.get(spec["op"])
    except ConfigError as e:
        raise ConfigError(f"{where}: {str(e).split(': ', 1)[1]}") from None
    # Simple annotated parameters (bool/int/float/str) are type-checked here; the rest by the
    # probe run in build_pipeline.
    hints = typing.get_type_hints(op)
    allowed = [n for n in inspect.signature(op).parameters if n not in ("x", "gen")]
    for name, value in params.items():
        if name not in allowed:
            raise ConfigError(
                f"{where}.{name}: unknown parameter of {spec['op']}{did_you_mean(name, allowed)}"
                f" (valid: {', '.join(allowed)})"
            )
        expected = hints.get(name)
        if expected in (bool, int, float, str) and not _fits(value, expected):
            raise ConfigError(
                f"{where}.{name} = {value!r}: expected {expected.__name__} for {spec['op']}"
            )
    return functools.partial(op, **params)


def _fits(value: Any, expected: type) -> bool:
    """YAML gives bool, int, float, str: a bool is no number, an int may stand for a float."""
    if expected is bool or isinstance(value, bool):
        return type(value) is expected
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)
