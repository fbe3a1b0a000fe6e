"""What the dataset case generators share: the command they run, special files, and hostile
pickles whose loading would create the case's marker file."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path

from reliability_harness import Case, Content

GRID = ("-o", "{tmp}/grid.png")


def info(*args: str) -> tuple[str, ...]:
    """`cnnlab data info ARGS -o <case>/grid.png`: reads, checks and tabulates a dataset."""
    return ("data", "info", *args, *GRID)


def case(kind: str, argv: tuple[str, ...], base: dict[str, Content]) -> Callable[..., Case]:
    """make(label, files, expect="error", *names): a Case of `kind` running `argv` on `base`
    with `files` added or replaced."""

    def make(label: str, files: dict[str, Content], expect: str = "error", *names: str) -> Case:
        return Case(kind, label, argv, {**base, **files}, expect, names)

    return make


def nothing(path: Path, marker: Path) -> None:
    """A file left out of a set: nothing is made at its path."""


# A file of the set replaced by something that is not a regular file (or by nothing).
NOT_FILES: dict[str, Content] = {
    "missing": nothing,
    "a directory": lambda p, _: p.mkdir(),
    "a FIFO": lambda p, _: os.mkfifo(p),
    "a link to /dev/zero": lambda p, _: os.symlink("/dev/zero", p),
    "a link to itself": lambda p, _: os.symlink(p, p),
}


class System:
    """os.system(touch marker): the classic hostile pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Eval:
    """eval(open(marker, 'w')): code as text."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w')",))


class Popen:
    """subprocess.call(['touch', marker]): another module, another route."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


PAYLOADS = (System, Eval, Popen)


def hostile(payload: type, protocol: int, wrap: Callable = lambda evil: evil) -> Content:
    """A pickle (at `protocol`) whose loading would create the case's marker."""
    return lambda path, marker: pickle.dumps(wrap(payload(marker)), protocol=protocol)
