"""Datasets: sources by name, split, convert, statistics, and loaders on the training device."""

from __future__ import annotations

from cnnlab.config.schema import DataConfig
from cnnlab.data import sources  # noqa: F401  (registers every source)
from cnnlab.data.checks import check_usable
from cnnlab.data.imageset import DataBundle, DatasetInfo, ImageSet
from cnnlab.data.loader import BatchLoader, DeviceLoader, StreamLoader, make_loader
from cnnlab.data.paths import cache_root
from cnnlab.data.registry import SOURCES
from cnnlab.data.select import select_splits
from cnnlab.data.split import split_train_val
from cnnlab.data.stats import PRESETS, Stats, cached_channel_stats
from cnnlab.data.transform import convert
from cnnlab.errors import ConfigError

__all__ = [
    "BatchLoader", "DataBundle", "DatasetInfo", "DeviceLoader", "ImageSet", "StreamLoader",
    "build", "make_loader",
]  # fmt: skip

LABEL_SETS = {"cifar100": ("fine", "coarse")}  # datasets with more than one label set


def build(cfg: DataConfig) -> DataBundle:
    """Read the source, keep data.classes, split off validation unless the source has its own,
    convert, measure."""
    if cfg.label_set != "fine" and cfg.label_set not in LABEL_SETS.get(cfg.name, ()):
        raise ConfigError(
            f"data.label_set = {cfg.label_set!r}: {cfg.name} has one label set "
            f"(coarse labels exist for: {', '.join(LABEL_SETS)})"
        )
    read = SOURCES.get(cfg.name)
    splits = select_splits(read(cfg), cfg.classes)  # before the split: it stratifies by class
    check_usable(splits, cfg)
    if splits.val is not None:
        train, val = splits.train, splits.val
    else:
        train, val = split_train_val(splits.train, cfg.val_split, cfg.split_seed)
    train, val = (convert(s, cfg.channels, cfg.image_size) for s in (train, val))
    test = None if splits.test is None else convert(splits.test, cfg.channels, cfg.image_size)

    channels = train.images.shape[1]
    mean, std = normalization(cfg, train, channels)
    info = DatasetInfo(
        name=cfg.name,
        classes=train.classes,
        channels=channels,
        image_size=tuple(train.images.shape[-2:]),
        mean=mean,
        std=std,
        location=splits.location or (cfg.root or ""),
    )
    return DataBundle(train=train, val=val, test=test, info=info, skipped=splits.skipped)


def normalization(cfg: DataConfig, train: ImageSet, channels: int) -> Stats:
    if cfg.normalize == "none":
        return (0.0,) * channels, (1.0,) * channels
    if cfg.normalize == "train":
        return cached_channel_stats(train.images, train.labels, cache_root(cfg) / "stats")
    mean, std = PRESETS[cfg.normalize]
    if len(mean) != channels:
        raise ConfigError(
            f"data.normalize = {cfg.normalize!r}: a {len(mean)}-channel preset for "
            f"{channels}-channel images; set data.channels={len(mean)} or data.normalize=train"
        )
    return mean, std
