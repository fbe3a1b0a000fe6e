"""Inference copies of a trained net with each BatchNorm folded into the conv (or linear) before
it: the same function in one layer instead of two. On the CPU, where analysis is compute-bound,
the default cnn evaluates ~1.2-1.35x faster; logits agree with the unfolded net to ~1e-6."""

from __future__ import annotations

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A folded copy of `model` (in eval mode, in the memory format and device of the original);
    `model` itself is unchanged. A net torch.fx cannot trace (data-dependent control flow) or one
    in training mode is returned as it is: folding bakes in the running statistics."""
    if model.training:
        return model
    try:
        folded = fuse(model)
    except Exception:  # noqa: BLE001  (any tracing failure: the unfolded net is still correct)
        return model
    if _channels_last(model):
        folded = folded.to(memory_format=torch.channels_last)  # the new conv weights are NCHW
    return folded.eval()


def _channels_last(model: nn.Module) -> bool:
    return any(
        p.dim() == 4
        and p.is_contiguous(memory_format=torch.channels_last)
        and not p.is_contiguous()
        for p in model.parameters()
    )
