"""Batched, on-device augmentations: pure ops, the policy that chains them from config, and
test-time views."""

from __future__ import annotations

from cnnlab.augment.policy import BatchTransform, build_pipeline
from cnnlab.augment.tta import Views, build_views
from cnnlab.config.schema import AugmentConfig

__all__ = ["BatchTransform", "Views", "build", "build_views"]


def build(
    cfg: AugmentConfig, num_classes: int, channels: int, image_size: tuple[int, int]
) -> BatchTransform | None:
    return build_pipeline(cfg.train, num_classes, channels, image_size)
