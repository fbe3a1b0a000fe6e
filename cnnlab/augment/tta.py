"""augment.tta: test-time views. Evaluation averages the model's logits over the original
image and each view (e.g. airbench's mirror + shifted copies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

# views(x) -> [x, view1(x), ...] on normalised (B, C, H, W) batches.
Views = Callable[[torch.Tensor], list[torch.Tensor]]


def _mirror(x: torch.Tensor) -> list[torch.Tensor]:
    return [x.flip(-1)]


def _shifts(pixels: int) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """Two copies moved `pixels` down-right and up-left, edges repeated."""

    def views(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        padded = F.pad(x, (pixels,) * 4, mode="replicate")
        return [padded[..., :h, :w], padded[..., 2 * pixels :, 2 * pixels :]]

    return views


def build_views(specs: list[Any]) -> Views | None:
    """[flip, {view: shift, pixels: 1}] -> views(x); None for no TTA."""
    makers = []
    for i, spec in enumerate(specs):
        where = f"augment.tta[{i}]"
        entry = {"view": spec} if isinstance(spec, str) else spec
        if not isinstance(entry, dict) or entry.get("view") not in ("flip", "shift"):
            raise ConfigError(f"{where} = {spec!r}: expected flip or {{view: shift, pixels: N}}")
        allowed = {"view"} if entry["view"] == "flip" else {"view", "pixels"}
        if set(entry) - allowed:
            raise ConfigError(f"{where}: unknown key(s) {sorted(set(entry) - allowed)}")
        if entry["view"] == "flip":
            makers.append(_mirror)
            continue
        pixels = entry.get("pixels", 1)
        if type(pixels) is not int or pixels < 1:
            raise ConfigError(f"{where}.pixels = {pixels!r}: expected an integer >= 1")
        makers.append(_shifts(pixels))
    if not makers:
        return None

    def views(x: torch.Tensor) -> list[torch.Tensor]:
        return [x] + [v for make in makers for v in make(x)]

    return views
