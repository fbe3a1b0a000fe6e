"""Stratified, seeded validation split."""

from __future__ import annotations

import torch
from sklearn.model_selection import train_test_split

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import ConfigError


def split_train_val(data: ImageSet, val_split: float | int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out `val_split` (a fraction or a count) of `data`, the same share of every class."""
    n = len(data)
    n_val = round(val_split * n) if isinstance(val_split, float) else val_split
    n_classes = len(torch.unique(data.labels))
    if not n_classes <= n_val <= n - n_classes:
        raise ConfigError(
            f"data.val_split = {val_split!r}: gives {n_val} validation images of {n}; "
            f"need between {n_classes} and {n - n_classes} so every class is on both sides"
        )
    train_idx, val_idx = train_test_split(
        torch.arange(n).numpy(),
        test_size=n_val,
        stratify=data.labels.numpy(),
        random_state=seed,
    )
    return data.subset(torch.from_numpy(train_idx)), data.subset(torch.from_numpy(val_idx))
