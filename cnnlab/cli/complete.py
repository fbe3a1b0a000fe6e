"""Shell completion (argcomplete): commands, sub-commands and options come from the parser; this
module completes the KEY=VALUE words. Keys come from the schema alone, without torch, so a key
completes in the time Python takes to start; the names a registry holds (model.name=,
data.name=, optim.name=, schedule.name=) import that registry, as `cnnlab list` does; recipe=
reads the shipped recipes; keys with a fixed set of values (train.precision=, booleans) offer it.

The shell asks by running `cnnlab` with argcomplete's variables set (_ARGCOMPLETE, COMP_LINE,
COMP_POINT); main() hands the parser to autocomplete(), which prints the completions and exits.
Installed for bash and zsh with: eval "$(register-python-argcomplete cnnlab)"
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

# key -> the `cnnlab list` kind whose names are its values
NAMED = {
    "model.name": "models",
    "data.name": "data",
    "optim.name": "optimizers",
    "schedule.name": "schedules",
    "recipe": "recipes",
}


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit; nothing without argcomplete."""
    try:
        import argcomplete
    except ImportError:  # the shell falls back to file names
        return
    argcomplete.autocomplete(parser)


def overrides(prefix: str, **_: Any) -> list[str]:
    """Completions of a KEY=VALUE word: keys up to the '=', then that key's values."""
    key, sep, value = prefix.partition("=")
    if not sep:
        return keys(prefix)
    return [f"{key}={v}" for v in values(key) if v.startswith(value)]


def keys(prefix: str) -> list[str]:
    """The keys that continue `prefix` at its level, "key=" for a value and "section." for a
    section ('t' -> train. transfer. track.); a single section opens into its keys ('opt' ->
    optim.name= optim.lr= ...), since the shell only adds a space after a single match."""
    from cnnlab.config.schema import valid_keys

    every = valid_keys()
    sections = {k.rpartition(".")[0] for k in every if "." in k}
    depth = prefix.count(".")
    found = [
        f"{k}." if k in sections else f"{k}="
        for k in every
        if k.startswith(prefix) and k.count(".") == depth
    ]
    if len(found) == 1 and found[0].endswith("."):
        return keys(found[0])
    return found


def values(key: str) -> list[str]:
    """What `key` may be set to, where that is a known set: a registry's names, a Literal's
    values, true/false; [] for free values (numbers, paths)."""
    if key in NAMED:
        from cnnlab.cli.list_command import ENTRIES

        _, rows = ENTRIES[NAMED[key]]()
        return [name for name, *_ in rows if ":" not in name]  # not torchvision:NAME
    return _choices(_annotation(key))


def _annotation(key: str) -> Any:
    from cnnlab.config.schema import Config

    model: Any = Config
    for part in key.split("."):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        model = fields[part].annotation
    return model


def _choices(annotation: Any) -> list[str]:
    if annotation is bool:
        return ["true", "false"]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # the schema's strict types: Annotated[Literal[1, 3], ...]
        return _choices(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):  # Literal[...] | None
        return [c for member in typing.get_args(annotation) for c in _choices(member)]
    return []
