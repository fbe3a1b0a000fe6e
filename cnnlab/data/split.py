"""Stratified, seeded validation split."""

from __future__ import annotations

import torch
from sklearn.model_selection import train_test_split

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import ConfigError, DataError


def split_train_val(data: ImageSet, val_split: float | int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out `val_split` (a fraction or a count) of `data`, the same share of every class."""
    n = len(data)
    n_val = round(val_split * n) if isinstance(val_split, float) else val_split
    counts = torch.bincount(data.labels, minlength=len(data.classes))
    present = counts > 0
    if (counts[present] < 2).any():
        lonely = data.classes[int(torch.nonzero(present & (counts < 2))[0])]
        raise DataError(
            f"class {lonely!r} has only 1 image: a stratified validation split needs at least 2 "
            "per class (add images, or give the dataset its own val split)"
        )
    n_classes = int(present.sum())
    # Stratification cannot draw fewer images than there are classes on either side.
    if not n_classes <= n_val <= n - n_classes:
        raise ConfigError(
            f"data.val_split = {val_split!r}: gives {n_val} validation images of {n}; "
            f"need between {n_classes} and {n - n_classes} ({n_classes} classes)"
        )
    train_idx, val_idx = train_test_split(
        torch.arange(n).numpy(),
        test_size=n_val,
        stratify=data.labels.numpy(),
        random_state=seed,
    )
    return data.subset(torch.from_numpy(train_idx)), data.subset(torch.from_numpy(val_idx))
