"""The one YAML reader for what users type: config files, `a.b=value` overrides and
`runs list --filter` values.

PyYAML's safe_load is safe from code execution but not from its input: an explicit tag with no
value (`!!float`) or an impossible date raises IndexError/ValueError from inside the parser, a
5,000-deep list overflows the stack, and an alias bomb ("billion laughs") builds a value whose
every later use (validation, copying, the error message) runs for ever. This reader refuses all
of those with one line naming the source and the line, and returns only plain data: None,
bool, int, float, str, and lists and dicts of them.

- Explicit tags (`!!float`, `!!python/...`, `!custom`) are refused: a config never needs one,
  and quoting gives a string.
- Dates are not resolved (`2001-13-45` stays a string) and `=` is a plain string, so every
  implicit type left constructs without raising.
- Nesting deeper than MAX_DEPTH, a value that expands (through aliases) to more than MAX_NODES
  nodes, an alias to the collection it sits in, and a key given twice in one mapping are
  refused while composing, before anything is built.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from cnnlab.errors import ConfigError

MAX_BYTES = 1 << 20  # a config file, in bytes; real ones are a few KiB
# Mappings and lists inside each other; the deepest config key (train.early_stopping.patience,
# or augment.train's list of mappings of lists) is 4 levels.
MAX_DEPTH = 32
# Scalars, lists and mappings after aliases are expanded; a config has a few hundred.
MAX_NODES = 100_000
QUOTED = 100  # characters of a value quoted in an error message

_YAML_TAGS = "tag:yaml.org,2002:"
# Types resolved from plain text that PyYAML cannot always construct: timestamps (2001-13-45
# raises ValueError) and the "=" value key (no constructor at all).
_UNRESOLVED = {f"{_YAML_TAGS}timestamp", f"{_YAML_TAGS}value"}


class YamlSyntaxError(ConfigError, yaml.YAMLError):
    """Text that is not YAML at all. Still a yaml.YAMLError, so a caller that treats such
    text as a plain string (`runs list --filter`) can; refused content stays a ConfigError."""


class _Refused(Exception):
    """Well-formed YAML outside what this reader accepts; message without the source."""

    def __init__(self, message: str, mark: yaml.Mark | None):
        super().__init__(message)
        self.line = None if mark is None else mark.line + 1


def quote(value: Any, limit: int = QUOTED) -> str:
    """repr(value) cut to about `limit` characters, in time bounded whatever its size (reprlib
    looks at a few items per level): an error message never prints a megabyte."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
    short.maxlevel = 4
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def load_yaml(text: str, source: str) -> Any:
    """YAML text -> plain data. ConfigError "<source> line N: <problem>" (one line) otherwise;
    YamlSyntaxError when the text is not YAML."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters; expected at most {MAX_BYTES:,}")
    loader = None
    try:
        loader = _Loader(text)  # refuses non-printable characters already
        return loader.get_single_data()
    except _Refused as e:
        where = "" if e.line is None or "\n" not in text else f" line {e.line}"
        raise ConfigError(f"{source}{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
        if "nesting depth" in problem:  # libyaml's own limit, met while it reads ahead
            raise ConfigError(f"{source}{where}: nested deeper than {MAX_DEPTH} levels") from None
        raise YamlSyntaxError(f"{source}{where}: not valid YAML ({problem})") from None
    except ValueError as e:  # int() of a number past Python's 4,300-digit limit
        raise ConfigError(f"{source}: a value cannot be read ({quote(str(e))})") from None
    except (IndexError, KeyError, TypeError, AttributeError, RecursionError) as e:
        # PyYAML's own bugs on odd input; the text is the user's problem, not a crash of ours.
        raise YamlSyntaxError(f"{source}: not valid YAML ({type(e).__name__})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _tag_name(tag: str) -> str:
    return f"!!{tag[len(_YAML_TAGS) :]}" if tag.startswith(_YAML_TAGS) else tag


try:
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    CParser = None

if CParser is not None:

    class _Base(Composer, CParser, SafeConstructor, Resolver):
        """libyaml scans and parses (C); composing, where the limits are checked, resolving
        and constructing stay in Python: 4.5 ms for a run's config.yaml against 20 ms for
        PyYAML's pure-Python SafeLoader and 1.8 ms for its CSafeLoader (2-core EPYC)."""

        def __init__(self, text: str):
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover
    _Base = yaml.SafeLoader


class _Loader(_Base):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _UNRESOLVED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it expands to; finished nodes only

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)  # the anchored node itself
            if id(node) not in self._sizes:
                raise _Refused(
                    f"alias *{event.anchor} refers to a value it is part of", event.start_mark
                )
            return node
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Refused(
                f"YAML tag {quote(_tag_name(tag), 40)} is not accepted (write the plain value; "
                "quote it to make a string)",
                event.start_mark,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            if len(set(keys)) != len(keys):
                twice = next(k for i, k in enumerate(keys) if k in keys[:i])
                raise _Refused(f"key {quote(twice, 60)} is given twice", node.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_NODES:
            raise _Refused(
                f"expands to more than {MAX_NODES:,} values (YAML aliases repeat what they "
                "name); a config needs a few hundred",
                node.start_mark,
            )
        self._sizes[id(node)] = size


def nested_deeper_than(value: Any, levels: int) -> bool:
    """Whether lists and dicts in `value` nest more than `levels` deep; walked level by level,
    without recursion, so a deep value is told apart here and not by a RecursionError later."""
    level = [value]
    for _ in range(levels):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True
