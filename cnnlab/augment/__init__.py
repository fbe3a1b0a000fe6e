"""Batched, on-device augmentations: pure ops, and the policy that chains them from config."""

from __future__ import annotations

from cnnlab.augment.policy import BatchTransform, build_pipeline
from cnnlab.config.schema import AugmentConfig


def build(cfg: AugmentConfig, channels: int, image_size: tuple[int, int]) -> BatchTransform | None:
    return build_pipeline(cfg.train, channels, image_size)
