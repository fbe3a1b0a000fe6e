"""Config values in a few words, for run names and tables (no torch: `runs list` stays fast)."""

from __future__ import annotations

import re
from pathlib import Path


def backbone_label(spec: str) -> str:
    """model.backbone in a few words: 'torchvision:resnet18', or the run's name without its
    timestamp ('digits-cnn' for runs/20261123-101500-digits-cnn/checkpoints/best.safetensors)."""
    if ":" in spec:
        return spec
    path = Path(spec)
    if path.parent.name == "checkpoints":
        path = path.parent.parent
    return re.sub(r"^\d{8}-\d{6}-", "", path.name)
