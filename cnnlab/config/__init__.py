"""Config: the schema (every default), loading/merging/validating, and shipped recipes.

The names below are loaded on first use (PEP 562), so that importing a light part of this
package (defaults, keys, names) does not build the pydantic schema."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.config.load import dump_yaml, load_config, recipe_names
    from cnnlab.config.schema import Config

__all__ = ["Config", "dump_yaml", "load_config", "recipe_names"]
_HOMES = {"Config": "schema", "dump_yaml": "load", "load_config": "load", "recipe_names": "load"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
