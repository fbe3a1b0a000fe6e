"""Shared fixtures: quick configs, a digits-backed source that has its own test split, and
torchvision's datasets as they are offline."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from cnnlab.config import Config, load_config
from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import SourceSplits
from cnnlab.data.registry import register_source
from cnnlab.data.sources import idx
from cnnlab.data.sources.digits import read_digits


@register_source("digits-with-test")
def _digits_with_test(cfg: DataConfig) -> SourceSplits:
    """digits with every 5th image held out as a test split, as CIFAR or MNIST ship one."""
    full = read_digits(cfg).train
    is_test = torch.arange(len(full)) % 5 == 0
    return SourceSplits(train=full.subset(~is_test), test=full.subset(is_test))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Caches (stats, decoded folders, downloads) go to a temp dir, never the user's ~/.cache;
    subprocesses inherit it through the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


class OfflineDataset:
    """torchvision.datasets.MNIST / FashionMNIST as they fail with no network."""

    def __init__(self, root, train=True, download=False, **kwargs):
        # torchvision's own message: several lines, the URLError of the last mirror at the end.
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\n"
            "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
            "<urlopen error [Errno -3] Temporary failure in name resolution>"
        )


@pytest.fixture
def offline_torchvision(tmp_path, monkeypatch) -> types.ModuleType:
    """The IDX sources kept off the network (a fake `torchvision.datasets` whose classes fail
    as torchvision does offline; tests may swap them), out of the user's cache and away from
    the system's Fashion-MNIST, so "absent" really is absent."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "no-system-fashion-mnist")
    fake = types.ModuleType("torchvision.datasets")
    fake.MNIST = type("MNIST", (OfflineDataset,), {})
    fake.FashionMNIST = type("FashionMNIST", (OfflineDataset,), {})
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
    return fake


@pytest.fixture
def quick(tmp_path: Path):
    """quick(*overrides) -> Config: a 2-epoch, narrow-net run writing under tmp_path/runs."""

    def make(*overrides: str) -> Config:
        base = ["train.epochs=2", "model.width=8", f"run.dir={tmp_path / 'runs'}"]
        return load_config(overrides=[*base, *overrides])

    return make
