"""Whole-set conversions applied once after reading: channel count and square resize."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import ConfigError

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale uses.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def convert(data: ImageSet, channels: int | None, image_size: int | None) -> ImageSet:
    images = data.images
    if channels is not None and channels != images.shape[1]:
        images = _to_channels(images, channels)
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = _resize(images, image_size)
    return ImageSet(images, data.labels, data.classes)


def _to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    have = images.shape[1]
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        gray = (images.float() * _LUMA).sum(dim=1, keepdim=True)
        return gray.round().clamp(0, 255).to(torch.uint8)
    raise ConfigError(f"data.channels = {channels}: cannot convert {have}-channel images")


def _resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    # Chunked so a large set never needs a full float copy in memory.
    out = [
        F.interpolate(
            part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for part in images.split(chunk)
    ]
    return torch.cat(out)
