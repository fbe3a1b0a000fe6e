"""Dotted config keys: nested mappings <-> {"optim.lr": 0.1}. Free of pydantic, so readers of
run directories (`cnnlab runs list`) need not import the schema."""

from __future__ import annotations

from typing import Any


def nest(parts: list[str], value: Any) -> dict[str, Any]:
    """["optim", "lr"], 0.1 -> {"optim": {"lr": 0.1}}."""
    for part in reversed(parts):
        value = {part: value}
    return value


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1} (the inverse of nest); lists and scalars are
    leaves, as in overrides."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
