"""What every dataset must be before anything is built on it, whatever its source: images in
the training split, at least two classes there, and images of at least MIN_IMAGE_SIZE px a side.

Each source checks its own files; these checks catch what a well-formed file can still hold
(an IDX file of one class, 1×1 images in a .npz), before a model or a run directory exists.
"""

from __future__ import annotations

import torch

from cnnlab.config.schema import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, DataConfig
from cnnlab.data.imageset import SourceSplits
from cnnlab.errors import DataError


def check_usable(splits: SourceSplits, cfg: DataConfig) -> None:
    """DataError (one line, naming the dataset and where it was read) unless `splits` can
    train a classifier with this config."""
    where = f"{cfg.name} ({splits.location})" if splits.location else cfg.name
    for name in ("train", "val", "test"):
        images = getattr(splits, name)
        if images is not None and len(images) == 0:
            raise DataError(f"{where}: the {name} split holds no images")
    train = splits.train
    present = torch.unique(train.labels)
    if len(present) < 2:
        only = train.classes[int(present[0])]
        raise DataError(
            f"{where}: every training image is of one class ({only!r}); a classifier needs "
            "at least 2"
        )
    h, w = train.images.shape[-2:]
    if cfg.image_size is None and min(h, w) < MIN_IMAGE_SIZE:
        raise DataError(
            f"{where}: images are {h}×{w} px (H×W), below the {MIN_IMAGE_SIZE}×"
            f"{MIN_IMAGE_SIZE} an image needs (are the axes right?); set data.image_size=N "
            f"({MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}) to resize them"
        )
