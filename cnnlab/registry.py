"""One name -> object table per kind of thing (datasets, models, optimizers, ...).

Registries are the only module-level mutable state in cnnlab. A duplicate name is a bug in
cnnlab (RuntimeError); an unknown name is a user error (ConfigError listing the valid names).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cnnlab.errors import ConfigError

T = TypeVar("T")


def did_you_mean(word: str, choices: list[str]) -> str:
    """' — did you mean X?' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" — did you mean {close[0]}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, config_key: str):
        self.kind = kind  # "optimizer"
        self.config_key = config_key  # "optim.name": where users choose an entry
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        names = self.names()
        hint = did_you_mean(name, names) if isinstance(name, str) else ""
        raise ConfigError(
            f"{self.config_key}: unknown {self.kind} {name!r}{hint} (valid: {', '.join(names)})"
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
