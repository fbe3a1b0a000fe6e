"""Where cnnlab keeps files it derives from datasets (decoded caches, downloads)."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.config.schema import DataConfig


def cache_root(cfg: DataConfig) -> Path:
    """data.cache_dir, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab (not created here)."""
    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"
