"""scikit-learn's embedded digits: 1797 real 8x8 grayscale images of handwritten digits, 10 classes.

Ships inside scikit-learn, so it needs no download and no `data.root`.
"""

from __future__ import annotations

import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.data.registry import register_source
from cnnlab.errors import ConfigError


@register_source("digits")
def read_digits(cfg: DataConfig) -> SourceSplits:
    """scikit-learn's 1797 real 8x8 handwritten digits, shipped with it (no files needed)."""
    if cfg.root is not None:  # an explicit root is never silently ignored
        raise ConfigError(
            f"data.root = {cfg.root}: digits ships inside scikit-learn and reads no files; "
            "unset data.root (data.root=null), or name the format of the files there"
        )
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 of an original 32x32 bitmap's 4x4 blocks; rescale to 0..255.
    pixels = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round()
    images = pixels.to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    classes = tuple(str(c) for c in bunch.target_names)
    location = "scikit-learn's bundled digits (sklearn.datasets.load_digits)"
    return SourceSplits(train=ImageSet(images, labels, classes), location=location)
