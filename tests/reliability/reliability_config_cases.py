"""Generated config inputs: `key=value` overrides, config YAML files and `runs list --filter`
values, each with the outcome it must have. Accepted inputs run `config show` or `runs list`,
which read and validate without training."""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel
from reliability_harness import Case

from cnnlab.config.schema import Config

# Bad YAML, whatever the key: refused by the reader itself (tags, aliases, depth, duplicate
# keys) or not YAML at all. (text, what the error must say besides the key)
BOMB = (
    "[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b],"
    " &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d],"
    " &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], &g [*f,*f,*f,*f,*f,*f,*f,*f,*f],"
    " [*g,*g,*g,*g,*g,*g,*g,*g,*g]]"
)
YAML_REFUSED = [
    ("!!float", "tag"),
    ("!!float ''", "tag"),
    ("!!timestamp 2001-13-45", "tag"),
    ("!!int x", "tag"),
    ("!!binary aGk=", "tag"),
    ("!!set {a, b}", "tag"),
    ("!!omap [a: 1]", "tag"),
    ("!custom 3", "tag"),
    ("!!python/object/apply:os.system ['touch {marker}']", "tag"),
    ("!!python/name:os.system ''", "tag"),
    ("[1, !!python/object/new:os.system ['touch {marker}']]", "tag"),
    (BOMB, "expands to more than"),
    ("[" * 5000 + "]" * 5000, "nested deeper"),
    ("{a: " * 40 + "1" + "}" * 40, "nested deeper"),
    ("&a [1, *a]", "refers to a value it is part of"),
    ("{a: 1, a: 2}", "given twice"),
    ("[1, 2", "not valid YAML"),
    ("{a: 1", "not valid YAML"),
    ("'abc", "not valid YAML"),
    ('"abc', "not valid YAML"),
    ("*nowhere", "not valid YAML"),
    ("@reserved", "not valid YAML"),
    ("`tick", "not valid YAML"),
    ("[a, b]: c", ""),  # a list as a mapping key: unhashable
    ("{[1]: 2}", ""),
    ("9" * 5000, "cannot be read"),
    ('"\\x00"', ""),  # NUL, fine as YAML: refused by the schema (or as the wrong type)
]

UNTYPED_JUNK = "[]{},:&*!|>'\"%@#-? \t=~.0123456789eE+xyzaTFn\\"


def leaf_fields(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, annotation) of every settable value of the schema."""
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from leaf_fields(sub, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", sub


def _strip(t: Any) -> Any:
    while typing.get_origin(t) is Annotated:
        t = typing.get_args(t)[0]
    return t


def kind_of(annotation: Any) -> tuple[str, bool, tuple]:
    """('float' | 'int' | 'bool' | 'str' | 'name-or-index' | 'literal' | 'list' | 'dict' |
    'tuple', nullable, literal values)."""
    t = _strip(annotation)
    union = typing.get_origin(t) in (typing.Union, types.UnionType)
    members = [_strip(m) for m in typing.get_args(t)] if union else [t]
    nullable = type(None) in members
    members = [m for m in members if m is not type(None)]
    first = members[0]
    if typing.get_origin(first) is Literal:
        return "literal", nullable, typing.get_args(first)
    if typing.get_origin(first) in (list, tuple, dict):
        return typing.get_origin(first).__name__, nullable, ()
    if float in members:
        return "float", nullable, ()
    if str in members and int in members:
        return "name-or-index", nullable, ()
    return {bool: "bool", int: "int"}.get(first, "str"), nullable, ()


# kind -> (values that must be refused, values that must be accepted, values either way)
TYPED = {
    "float": (
        ["true", "false", "fast", ".inf", "-.inf", ".nan", "1.0e999", "'nan'", "[1]", "{a: 1}"],
        [],
        ["-1", "0", "0.5", "1e-3", "'0.25'", "3", "1e300"],
    ),
    "int": (
        ["true", "2.5", "1" + "0" * 30, "-1" + "0" * 30, "x", ".inf", "[1]", "{}"],
        [],
        ["0", "1", "-1", "3", "'4'", "70000"],
    ),
    "bool": (["0", "1", "2", "'yes'", "[]", "{}", "x", "0.0"], ["true", "false", "yes", "off"], []),
    "str": (["[]", "{}", "123", "true", "s" * 5000, '"a\\0b"'], ["abc", "'123'"], ["''"]),
    "name-or-index": (
        ["[]", "{}", "true", "s" * 5000, '"a\\0b"', "1" + "0" * 30],
        ["abc", "3"],
        [],
    ),
    "literal": (["nope", "[]", "{}"], [], []),
    "list": (["3", "[true]", "[[[1]]]", "{a: 1}"], ["[]"], ["[1, 2]", "[" + "1, " * 2000 + "1]"]),
    "tuple": (["[0.9]", "[0.9, 0.99, 0.5]", "[true, 0.9]", "[.nan, 0.9]", "3"], ["[0.8, 0.9]"], []),
    "dict": (["[1]", "{a: true}", "{a: x}", "{a: .inf}", "3"], ["{a: 0.5}"], []),
}


def typed_values(key: str, annotation: Any) -> Iterator[tuple[str, str]]:
    """(YAML text, expectation) for one key."""
    kind, nullable, literals = kind_of(annotation)
    bad, good, either = TYPED[kind]
    if key == "train.device":  # text with a syntax of its own
        bad, good = ["meta", "xla", "hpu", "cpu:7", "cuda:-1", "CPU", "''", *bad], ["cpu", "cuda:1"]
    if key in ("data.root", "data.cache_dir", "model.backbone", "run.dir"):
        bad = [*bad, "/tmp/" + "c" * 300]
    yield from ((v, "error") for v in bad)
    yield from ((v, "accept") for v in good)
    yield from ((v, "either") for v in either)
    yield ("null", "accept" if nullable else "error")
    for value in literals:
        yield (str(value).lower() if isinstance(value, bool) else str(value), "accept")
    if kind == "literal" and all(isinstance(v, str) for v in literals):
        yield (literals[0].upper() + "x", "error")


def settable() -> Iterator[tuple[str, Any]]:
    """leaf_fields but `recipe`, whose valid values are the shipped recipes (see malformed)."""
    return ((k, a) for k, a in leaf_fields() if k != "recipe")


def overrides(rng: Random) -> Iterator[Case]:
    for key, annotation in settable():
        # The reader refuses these whatever the key; each key gets a few of them.
        refused = [(v, "error") for v, _ in rng.sample(YAML_REFUSED, 2)]
        values = [*typed_values(key, annotation), *refused]
        for text, expect in values:
            names = (key,) if expect == "error" else ()
            yield Case(
                "override",
                f"{key}={text[:40]}",
                ("config", "show", f"{key}={text}"),
                expect=expect,
                names=names,
            )
        # Seeded junk: any outcome but a crash.
        junk = "".join(rng.choice(UNTYPED_JUNK) for _ in range(rng.randint(1, 12)))
        yield Case(
            "override",
            f"{key}={junk!r}",
            ("config", "show", f"{key}={junk}"),
            expect="either",
            names=(key,),
        )
    malformed = [
        ("optim.lr", "optim.lr"),
        ("=3", "expected key=value"),
        (".lr=1", "expected key=value"),
        ("optim..lr=1", "expected key=value"),
        ("optim.lr-x=2", "expected key=value"),
        ("1optim=3", "expected key=value"),
        ("optim.lrr=0.1", "did you mean optim.lr"),
        ("trian.epochs=3", "did you mean train"),
        ("a." * 5000 + "b=1", "parts"),
        ("x" * 100_000 + "=1", "unknown key xxxx"),
        ("optim.lr=" + "9" * 100_000, "optim.lr"),
        ("optim.lr=1\nfoo", "optim.lr"),
        ("optim=3", "optim"),
        ("optim.lr.x=3", "optim.lr"),
        ("train.early_stopping.patiense=3", "did you mean train.early_stopping.patience"),
        ("recipe=defualt", "did you mean default"),
        ("recipe=[cpu-fast]", "recipe"),
    ]
    for text, fragment in malformed:
        yield Case("override", text[:60], ("config", "show", text), names=(fragment,))
    accepted = [
        ("optim.lr=1e-3", "read as a number", "lr: 0.001"),
        ("run.name=2024-01-01", "stays text", "name: '2024-01-01'"),
    ]
    for text, why, shown in accepted:
        yield Case(
            "override", f"{text} {why}", ("config", "show", text), expect="accept", names=(shown,)
        )


def config_files(rng: Random) -> Iterator[Case]:
    """Each key with two bad values and one good one, as a file."""
    for key, annotation in settable():
        values = list(typed_values(key, annotation))
        picked = [v for v in values if v[1] == "error"][:2] + [
            v for v in values if v[1] == "accept"
        ][:1]
        for text, expect in picked:
            *sections, name = key.split(".")
            body = f"{name}: {text}\n"
            for section in reversed(sections):
                body = f"{section}:\n" + "".join(f"  {line}\n" for line in body.splitlines())
            names = (key, "c.yaml") if expect == "error" else ()
            yield Case(
                "config-file",
                f"{key}: {text[:40]}",
                ("config", "show", "-c", "{tmp}/c.yaml"),
                {"c.yaml": body.encode()},
                expect,
                names,
            )


def config_file_damage(rng: Random) -> Iterator[Case]:
    """Whole files: refused YAML, files that are not mappings, text or regular files."""
    for text, fragment in YAML_REFUSED:
        for body in (f"optim:\n  lr: {text}\n", f"{text}\n"):
            yield Case(
                "config-file",
                f"file {body[:40]!r}",
                ("config", "show", "-c", "{tmp}/c.yaml"),
                {"c.yaml": body.encode()},
                "error",
                ("c.yaml", fragment),
            )
    whole = [
        (b"", "accept", ()),
        (b"# only a comment\n", "accept", ()),
        (b"\xef\xbb\xbfoptim:\n  lr: 0.1\n", "accept", ()),  # a UTF-8 BOM
        (b"recipe: cpu-fast\n", "accept", ()),
        (b"- 1\n- 2\n", "error", ("expected a mapping",)),
        (b"3\n", "error", ("expected a mapping",)),
        (b"optim:\n\tlr: 0.1\n", "error", ("not valid YAML",)),
        (b"a: 1\n---\nb: 2\n", "error", ("not valid YAML",)),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "error", ("not UTF-8",)),
        (b"optim: {lr: 0.1}\n" + b"#" * (2 << 20), "error", ("larger than",)),
        (b"optmi:\n  lr: 0.1\n", "error", ("did you mean optim",)),
        (b"optim:\n  lr: 0.1\noptim:\n  name: sgd\n", "error", ("given twice",)),
        (b"base: &b {lr: 0.5}\noptim:\n  <<: *b\n", "error", ("unknown key base",)),
        (b"optim:\n  <<: 3\n", "error", ("not valid YAML",)),
        (b"train:\n  early_stopping: 3\n", "error", ("train.early_stopping",)),
        (b"\x00\x01\x02", "error", ("not valid YAML",)),
        (b"%YAML 9.9\n---\na: 1\n", "error", ("not valid YAML",)),
        ("optim:\n  name: \u00e9\u00e8\U0001f600\n".encode(), "accept", ()),
    ]
    for body, expect, names in whole:
        yield Case(
            "config-file",
            f"whole file {body[:30]!r}",
            ("config", "show", "-c", "{tmp}/c.yaml"),
            {"c.yaml": body},
            expect,
            names,
        )
    for _ in range(40):  # seeded junk files: any outcome but a crash
        body = "".join(rng.choice(UNTYPED_JUNK + "\n\n  ") for _ in range(rng.randint(1, 60)))
        yield Case(
            "config-file",
            f"junk file {body[:30]!r}",
            ("config", "show", "-c", "{tmp}/c.yaml"),
            {"c.yaml": body.encode()},
            "either",
            ("c.yaml",),
        )
    specials = {
        "a FIFO": lambda p, _: os.mkfifo(p),
        "a link to /dev/zero": lambda p, _: os.symlink("/dev/zero", p),
        "a directory": lambda p, _: p.mkdir(),
        "a link to itself": lambda p, _: os.symlink(p, p),
    }
    for label, make in specials.items():
        yield Case(
            "config-file",
            f"config file is {label}",
            ("config", "show", "-c", "{tmp}/c.yaml"),
            {"c.yaml": make},
            "error",
            ("c.yaml",),
            isolate=label == "a FIFO",
        )
    yield Case(
        "config-file",
        "missing file",
        ("config", "show", "-c", "{tmp}/none.yaml"),
        names=("none.yaml", "not found"),
    )


def _run_dir() -> dict[str, bytes]:
    config = Config().to_dict()
    summary = {"status": "completed", "best_val_acc": 0.5, "test_acc": 0.4, "best_epoch": 2}
    return {
        "runs/20260101-000000-digits-cnn/config.yaml": yaml.safe_dump(config).encode(),
        "runs/20260101-000000-digits-cnn/summary.json": json.dumps(summary).encode(),
    }


def filters(rng: Random) -> Iterator[Case]:
    """`runs list --filter` over one run: YAML refused by the reader is an error; text that is
    not YAML is compared as a string (exit 0); unknown keys are named."""
    files = _run_dir()
    argv = ("runs", "list", "--root", "{tmp}/runs", "--filter")
    for key, op in [("optim.lr", "="), ("test_acc", ">"), ("status", "!="), ("model.stages", "<=")]:
        for text, fragment in YAML_REFUSED:
            syntax = fragment == "not valid YAML"
            expect = "either" if syntax or not fragment else "error"
            yield Case(
                "filter",
                f"{key}{op}{text[:30]}",
                (*argv, f"{key}{op}{text}"),
                files,
                expect,
                (fragment,) if expect == "error" else (),
            )
        for _ in range(3):
            junk = "".join(rng.choice(UNTYPED_JUNK.replace("\t", "")) for _ in range(8))
            yield Case("filter", f"{key}{op}{junk!r}", (*argv, f"{key}{op}{junk}"), files, "either")
    for text, fragment in [
        ("optim.lrr=0.1", "did you mean optim.lr"),
        ("nosuchkey>1", "nosuchkey"),
        ("optim.lr", "expected KEY=VALUE"),
    ]:
        yield Case("filter", text, (*argv, text), files, "error", (fragment,))
    yield Case(
        "filter", "status=completed", (*argv, "status=completed"), files, "accept", ("digits-cnn",)
    )
    yield Case(
        "filter", "test_acc>=0.3", (*argv, "test_acc>=0.3"), files, "accept", ("digits-cnn",)
    )


GENERATORS = [overrides, config_files, config_file_damage, filters]

__all__ = ["GENERATORS", "Path"]
