"""Augmentations as pure batch functions: op(x, gen, **params) -> x.

x is (B, C, H, W) float in [0, 1] on any device; every random choice is drawn per sample from
`gen`, so a seed fixes the whole batch. Each op applies to a sample with probability `p`.
An op's keyword defaults are its parameters' only declaration; `augment.policy` checks names
and values against these signatures when the config is built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry

Op = Callable[..., torch.Tensor]
OPS: Registry[Op] = Registry("augmentation op", "augment.train[].op")


def _chosen(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """(B,) bool: which samples this op touches."""
    return torch.rand(x.shape[0], generator=gen, device=x.device) < p


@OPS.register("flip")
def flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5, vertical: bool = False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p = {p!r}: expected a probability in [0, 1]")
    mask = _chosen(x, gen, p).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-2 if vertical else -1), x)


@OPS.register("crop")
def crop(
    x: torch.Tensor, gen: torch.Generator, padding: int = 4, mode: str = "zero", p: float = 1.0
):
    """Pad by `padding` pixels on every side, then cut a random window of the original size."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p = {p!r}: expected a probability in [0, 1]")
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding = {padding!r}: expected an integer >= 0")
    pad_modes = {"zero": "constant", "reflect": "reflect", "edge": "replicate"}
    if mode not in pad_modes:
        raise ValueError(f"mode = {mode!r}: expected one of {', '.join(pad_modes)}")
    if padding == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode=pad_modes[mode])
    # Per-sample offsets in [0, 2*padding]; samples not chosen keep the centred (identity) window.
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=x.device)
    keep = ~_chosen(x, gen, p)
    dy[keep], dx[keep] = padding, padding
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]
