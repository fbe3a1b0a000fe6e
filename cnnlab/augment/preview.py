"""`cnnlab augment preview`: each row one training image, then K augmented draws of it."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.augment.policy import BatchTransform
from cnnlab.imagegrid import save_grid


def augmented_rows(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    pipeline: BatchTransform | None,
    draws: int,
    seed: int = 0,
) -> list[tuple[str, torch.Tensor]]:
    """images (N, C, H, W) uint8 -> [(class name, (1 + draws, C, H, W) uint8)], the original
    first. The whole batch goes through the pipeline at once, as in training, so mixing ops
    blend with the other shown images."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    x = images.float() / 255.0
    outs = [x]
    for _ in range(draws):
        out = x if pipeline is None else pipeline(x, labels, gen)[0]
        outs.append(out)
    stacked = torch.stack(outs, dim=1).mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return [(classes[int(label)], row) for label, row in zip(labels, stacked, strict=True)]


def write_preview(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    pipeline: BatchTransform | None,
    path: Path,
    draws: int = 8,
) -> None:
    rows = augmented_rows(images, labels, classes, pipeline, draws)
    save_grid(rows, path, title="original, then augmented draws")
