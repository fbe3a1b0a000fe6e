"""The sandbox every generated case runs in: caches in the test's temp dir, no network (the
IDX sources' torchvision download fails as it does offline), no system Fashion-MNIST."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def sandbox(offline_torchvision):
    """Every generated case runs offline (see tests/conftest.py)."""
