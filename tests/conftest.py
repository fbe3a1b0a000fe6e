"""Shared fixtures: quick configs and a digits-backed source that has its own test split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlab.config import Config, load_config
from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import SourceSplits
from cnnlab.data.registry import register_source
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


@pytest.fixture
def quick(tmp_path: Path):
    """quick(*overrides) -> Config: a 2-epoch, narrow-net run writing under tmp_path/runs."""

    def make(*overrides: str) -> Config:
        base = ["train.epochs=2", "model.width=8", f"run.dir={tmp_path / 'runs'}"]
        return load_config(overrides=[*base, *overrides])

    return make
