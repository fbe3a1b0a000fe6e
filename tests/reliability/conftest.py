"""The sandbox every generated case runs in: caches in the test's temp dir, no network (the
IDX sources' torchvision download fails as it does offline), no system Fashion-MNIST."""

from __future__ import annotations

import sys
import types

import pytest

from cnnlab.data.sources import idx


class _Offline:
    def __init__(self, root, train=True, download=False, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network in tests")


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "no-system-fashion-mnist")
    fake = types.ModuleType("torchvision.datasets")
    fake.MNIST = type("MNIST", (_Offline,), {})
    fake.FashionMNIST = type("FashionMNIST", (_Offline,), {})
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
