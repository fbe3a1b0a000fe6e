"""augment op name -> pure batch function, and the helpers every op shares.

An op is `op(x, gen, **params) -> x`: x is (B, C, H, W) float in [0, 1] on any device, every
random choice is drawn per sample from `gen` (a torch.Generator on x's device), and `p` is the
probability that a sample is touched. A mixing op (mixup, cutmix) also takes and returns the
targets: `op(x, y, gen, **params) -> (x, y)` with y (B, K) float class probabilities.
An op's keyword defaults are its parameters' only declaration; augment.policy checks users'
names, types and `p` against the signature, and the op raises ValueError for a bad value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from cnnlab.registry import Registry

Op = Callable[..., torch.Tensor]
OPS: Registry[Op] = Registry("augmentation op", "augment.train[].op")
register_op = OPS.register


def is_mixing(op: Op) -> bool:
    """Mixing ops take the targets too (their second parameter is `y`)."""
    return list(inspect.signature(op).parameters)[1] == "y"


def chosen(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """(B,) bool: which samples an op touches this time."""
    return torch.rand(x.shape[0], generator=gen, device=x.device) < p


def uniform(x: torch.Tensor, gen: torch.Generator, low: float, high: float) -> torch.Tensor:
    """(B,) float32 per-sample values drawn uniformly from [low, high]."""
    return low + (high - low) * torch.rand(x.shape[0], generator=gen, device=x.device)


def where(mask: torch.Tensor, changed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per sample: `changed` where mask (B,) is set, else the input."""
    return torch.where(mask.view(-1, 1, 1, 1), changed, x)


def expect(ok: bool, name: str, value, expected: str) -> None:
    """The ValueError every op raises for a bad parameter: "name = value: expected ..."."""
    if not ok:
        raise ValueError(f"{name} = {value!r}: expected {expected}")


def is_int(value) -> bool:
    """An integer as YAML gives it: True/False are bools, not counts."""
    return isinstance(value, int) and not isinstance(value, bool)
