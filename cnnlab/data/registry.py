"""data.name -> source. A source is `read(root: str | None) -> SourceSplits`."""

from __future__ import annotations

from collections.abc import Callable

from cnnlab.data.imageset import SourceSplits
from cnnlab.registry import Registry

Source = Callable[[str | None], SourceSplits]

SOURCES: Registry[Source] = Registry("dataset", "data.name")
register_source = SOURCES.register
