"""Read back the YAML that yaml.safe_dump writes for a config (dump_yaml): block mappings,
lists of scalars or of mappings, `[]` and `{}`, plain and single-quoted scalars, one per line.

Hand-written because it is measurably faster: PyYAML, even with libyaml, builds a Python node
and two marks per scalar, 1.7 ms for a run's config.yaml of ~100 keys (2-core EPYC), nearly all
of a first `runs list`; this reads one in ~0.2 ms. It is an accelerator, never a second
dialect: whatever it does not recognise (flow collections, double quotes, multi-line scalars,
comments, anchors, tags, dates, a key that is not a string...) gives None and the caller reads
the text with PyYAML; what it does return equals PyYAML's safe loader's result (plain scalars
are resolved with PyYAML's own implicit-resolver table; tests compare both readers on generated
configs and on arbitrary text).
"""

from __future__ import annotations

import re
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

_STR, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
_INT, _FLOAT, _BOOL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
# Numbers PyYAML's constructors read exactly as int()/float() do; other spellings it resolves
# to these tags (0x1F, 1_000, 1:30, .inf) are left to PyYAML.
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_PLAIN_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?\Z")
# Characters that cannot start a plain scalar ('-' can, before a non-space: -0.5).
_INDICATORS = frozenset("?:,[]{}#&*!|>'\"%@`")


# Plain scalars already resolved, text -> value (immutable: str, int, float, bool, None): the
# same keys and most of the same values recur in every run's config.
_KNOWN: dict[str, Any] = {}
KNOWN_MAX, KNOWN_CHARS = 20_000, 100  # entries, characters of one: at most ~4 MB


class _Unsupported(Exception):
    """Text this reader leaves to PyYAML."""


def load_dumped(text: str) -> dict[str, Any] | None:
    """The mapping `text` holds, as yaml.safe_load reads it, or None where the text is not in
    the shape safe_dump gives a config (then read it with PyYAML)."""
    if not text.replace("\n", "").isprintable():  # tabs, CR, BOM, NUL...
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        return None
    try:
        value, end = _mapping(lines, 0, 0)
    except (_Unsupported, RecursionError):  # nested deeper than Python recurses: PyYAML says so
        return None
    return value if end == len(lines) and value else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _mapping(lines: list[str], i: int, indent: int) -> tuple[dict[str, Any], int]:
    """The block mapping whose keys start at column `indent`, from line i; (it, next line)."""
    out: dict[str, Any] = {}
    while i < len(lines):
        line = lines[i]
        here = _indent(line)
        if here < indent:
            break
        content = line[indent:]
        if here > indent or content.startswith("-"):
            raise _Unsupported
        key_text, colon, rest = content.partition(": ")
        if not colon:
            if not content.endswith(":"):
                raise _Unsupported
            key_text, rest = content[:-1], ""
        key = _plain(key_text)
        if not isinstance(key, str):  # yes:, null:, 1: are not string keys
            raise _Unsupported
        i += 1
        if rest:
            out[key] = _scalar(rest)
            continue
        below = _indent(lines[i]) if i < len(lines) else -1
        if below == indent and lines[i][indent:].startswith("- "):  # safe_dump's list
            out[key], i = _sequence(lines, i, indent)
        elif below > indent:
            if lines[i][below:].startswith("- "):
                out[key], i = _sequence(lines, i, below)
            else:
                out[key], i = _mapping(lines, i, below)
        else:
            out[key] = None  # `key:` and nothing under it
    return out, i


def _sequence(lines: list[str], i: int, indent: int) -> tuple[list[Any], int]:
    """A block sequence whose dashes are at column `indent`, from line i: of scalars, or of
    mappings (`- op: crop` and the item's other keys under `op`)."""
    out = []
    while i < len(lines):
        line = lines[i]
        here = _indent(line)
        if here < indent or (here == indent and not line[indent:].startswith("- ")):
            break  # the enclosing mapping goes on
        if here > indent:
            raise _Unsupported
        item = line[indent + 2 :]
        if item[:1] != "'" and (": " in item or item.endswith(":")):
            lines[i] = " " * (indent + 2) + item  # the dash read as indentation
            value, i = _mapping(lines, i, indent + 2)
            out.append(value)
            continue
        out.append(_scalar(item))
        i += 1
    return out, i


def _scalar(text: str) -> Any:
    """A value written on its key's or dash's line."""
    if not text:
        raise _Unsupported
    if text == "[]":
        return []
    if text == "{}":
        return {}
    if text[0] == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != "'" or "'" in inner.replace("''", ""):
            raise _Unsupported
        return inner.replace("''", "'")
    return _plain(text)


def _plain(text: str) -> Any:
    """A plain (unquoted) scalar resolved and constructed as PyYAML's SafeLoader does."""
    try:
        return _KNOWN[text]
    except KeyError:
        pass
    value = _resolve(text)
    if len(_KNOWN) < KNOWN_MAX and len(text) <= KNOWN_CHARS:
        _KNOWN[text] = value
    return value


def _resolve(text: str) -> Any:
    if (
        not text
        or text[0] in _INDICATORS
        or text[0] == " "
        or text[-1] in " :"
        or (text[0] == "-" and (len(text) == 1 or text[1] == " "))
        or ": " in text
        or " #" in text
    ):
        raise _Unsupported
    tag = _STR
    table = Resolver.yaml_implicit_resolvers
    for candidate, pattern in [*table.get(text[0], ()), *table.get(None, ())]:
        if pattern.match(text):
            tag = candidate
            break
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return SafeConstructor.bool_values[text.lower()]
    if tag == _INT and _PLAIN_INT.match(text):
        return int(text)
    if tag == _FLOAT and _PLAIN_FLOAT.match(text):
        return float(text)
    raise _Unsupported  # other numbers, dates, merge keys: PyYAML's
