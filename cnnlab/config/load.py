"""recipe <- YAML file(s) <- `a.b=value` overrides  ->  validated, frozen Config.

Each merged value remembers where it came from, so an error can say "(from my.yaml)".
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cnnlab.config.keys import nest
from cnnlab.config.safe_yaml import MAX_BYTES, MAX_DEPTH, load_yaml, quote
from cnnlab.config.schema import Config, valid_keys
from cnnlab.errors import ConfigError
from cnnlab.registry import did_you_mean

DEFAULT_RECIPE = "default"
QUOTED_KEY = 80  # characters of an unknown key shown in a message
# Parts pydantic adds to an error's location for union members and wrapped types.
_TYPE_IN_LOC = re.compile(r"^(int|float|str|bool|none|[\w-]+\[.*\])$")


def recipe_names() -> list[str]:
    folder = resources.files("cnnlab.config") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_recipe(name: str) -> dict[str, Any]:
    if not isinstance(name, str) or name not in recipe_names():
        names = recipe_names()
        raise ConfigError(
            f"recipe: unknown recipe {quote(name)}{did_you_mean(str(name)[:QUOTED_KEY], names)}"
            f" (valid: {', '.join(names)})"
        )
    text = (resources.files("cnnlab.config") / "recipes" / f"{name}.yaml").read_text()
    return _parse_mapping(text, f"recipe {name}")


def _parse_mapping(text: str, source: str) -> dict[str, Any]:
    data = load_yaml(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    return data


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """A config file: a regular file (a FIFO or /dev/zero would block or never end), at most
    MAX_BYTES of UTF-8, read by the safe reader."""
    p = Path(path)
    try:
        exists, regular = p.exists(), p.is_file()
    except OSError as e:  # a name too long, a loop of links
        raise ConfigError(f"{quote(str(p))}: cannot read config file ({e.strerror})") from None
    if not exists:
        raise ConfigError(f"{p}: config file not found")
    if not regular:
        raise ConfigError(f"{p}: not a regular file; expected a YAML config file")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        text = data.decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); expected a YAML file") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_BYTES:,} bytes; expected a YAML config file")
    return _parse_mapping(text, str(p))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=0.05' -> (['optim', 'lr'], 0.05); the value is YAML (a scalar, list or mapping)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.isidentifier() for part in parts):
        raise ConfigError(f"override {quote(text)}: expected key=value, e.g. optim.lr=0.01")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(f"override {quote(text)}: a key of {len(parts)} parts; keys have 1-3")
    return parts, load_yaml(raw, f"override {quote(text)}")


def _merge(base: dict, update: dict, origin: dict, source: str, prefix: str = "") -> None:
    """Deep-merge `update` into `base` in place; lists and scalars replace, mappings merge."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, f"{dotted}.")
        else:
            base[key] = copy.deepcopy(value)
            origin[dotted] = source


def load_config(
    files: Sequence[str | Path] = (),
    overrides: Iterable[str] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Resolve a config the way the CLI does. `base` is an already-read mapping (e.g. a run's
    config.yaml loaded by a script) applied between the recipe and the files."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.append(("base config", base))
    layers += [(str(f), read_yaml_file(f)) for f in files]
    for text in overrides:
        parts, value = parse_override(text)
        layers.append((f"override {_shown(text)}", nest(parts, value)))

    recipe = DEFAULT_RECIPE
    for _, layer in layers:
        recipe = layer.get("recipe", recipe)

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    _merge(merged, _read_recipe(recipe), origin, f"recipe {recipe}")
    for source, layer in layers:
        _merge(merged, layer, origin, source)
    return validate(merged, origin)


def validate(data: dict[str, Any], origin: dict[str, str] | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, origin or {})) from None


def _describe(error: ValidationError, origin: dict[str, str]) -> str:
    """The first problem as one line: key, value, what was expected, where it came from."""
    problems = error.errors()
    first = problems[0]
    # Union members add their type to loc (val_split.float, layer.function-before[...]);
    # keep the user's key.
    key = ".".join(str(p) for p in first["loc"] if not _TYPE_IN_LOC.match(str(p)))
    source = next(
        (origin[k] for k in _prefixes(key) if k in origin),
        None,
    )
    where = f" (from {source})" if source else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if not key.isprintable():  # a YAML key may hold a newline: the message stays one line
        key = quote(key, QUOTED_KEY)
    elif len(key) > QUOTED_KEY:
        key = f"{key[: QUOTED_KEY - 3]}..."
    if first["type"] == "extra_forbidden":
        hint = did_you_mean(key, valid_keys())
        return f"unknown key {key}{hint}{where}{more}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{key} = {quote(first['input'])}: {message}{where}{more}"


def _shown(text: str) -> str:
    """Text as typed when it is short and printable, else quoted and cut."""
    return text if text.isprintable() and len(text) <= QUOTED_KEY else quote(text)


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
