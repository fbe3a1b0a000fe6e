"""data.name -> source. A source is `read(cfg: DataConfig) -> SourceSplits`.

A source reads `cfg.root` (or its own default places) and returns uint8 images; sources whose
files can differ in size (folders, Tiny-ImageNet) resize to `cfg.image_size` while decoding.
"""

from __future__ import annotations

from collections.abc import Callable

from cnnlab.config.schema import DataConfig
from cnnlab.data.imageset import SourceSplits
from cnnlab.registry import Registry

Source = Callable[[DataConfig], SourceSplits]

SOURCES: Registry[Source] = Registry("dataset", "data.name")
register_source = SOURCES.register
