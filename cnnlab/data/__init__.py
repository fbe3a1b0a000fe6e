"""Datasets: sources by name, split, convert, statistics, and loaders resident on the device."""

from __future__ import annotations

from cnnlab.config.schema import DataConfig
from cnnlab.data import sources  # noqa: F401  (registers every source)
from cnnlab.data.imageset import DataBundle, DatasetInfo, ImageSet
from cnnlab.data.loader import DeviceLoader
from cnnlab.data.registry import SOURCES
from cnnlab.data.split import split_train_val
from cnnlab.data.stats import channel_stats
from cnnlab.data.transform import convert

__all__ = ["DataBundle", "DatasetInfo", "DeviceLoader", "ImageSet", "build"]


def build(cfg: DataConfig) -> DataBundle:
    """Read the source, split off validation unless the source has its own, convert, measure."""
    read = SOURCES.get(cfg.name)
    splits = read(cfg)
    if splits.val is not None:
        train, val = splits.train, splits.val
    else:
        train, val = split_train_val(splits.train, cfg.val_split, cfg.split_seed)
    train, val = (convert(s, cfg.channels, cfg.image_size) for s in (train, val))
    test = None if splits.test is None else convert(splits.test, cfg.channels, cfg.image_size)

    channels = train.images.shape[1]
    if cfg.normalize == "train":
        mean, std = channel_stats(train.images)
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    info = DatasetInfo(
        name=cfg.name,
        classes=train.classes,
        channels=channels,
        image_size=tuple(train.images.shape[-2:]),
        mean=mean,
        std=std,
    )
    return DataBundle(train=train, val=val, test=test, info=info)
