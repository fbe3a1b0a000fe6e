"""Per-channel mean and std of a uint8 image set, on the [0, 1] scale."""

from __future__ import annotations

import torch


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], ...]:
    """(mean, std) per channel of (N, C, H, W) uint8 images, accumulated in float64."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for part in images.split(chunk):
        x = part.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
