"""Read run directories back: the one Run type that every command other than `train` works from.

A Run reads each of its files the first time it is asked for it, so making one is cheap:
`load_run` reads config.yaml and summary.json (and checks them), `runs list` gets its Runs from
the index (cnnlab.track.runindex) with the table's views already filled in, and only what asks
for `metrics` reads metrics.jsonl.

Files in a run directory are read as a user may have left them: only regular files (a FIFO or a
link to /dev/zero is refused, never waited on), at most MAX_BYTES (config.yaml and summary.json
16 MiB, metrics.jsonl 64 MiB: a real run's are a few kB), config.yaml without YAML aliases
(cnnlab never writes them; an alias bomb expands to gigabytes), parsed to a mapping, and nested
at most MAX_DEPTH levels deep.
"""

from __future__ import annotations

import json
import os
import stat
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cnnlab.config.dumped_yaml import load_dumped
from cnnlab.config.keys import flatten
from cnnlab.config.names import run_started
from cnnlab.config.safe_yaml import nested_deeper_than
from cnnlab.errors import CnnlabError
from cnnlab.track.rundir import Holder, read_holder, writer_alive

MAX_BYTES = {"config.yaml": 16 << 20, "summary.json": 16 << 20, "metrics.jsonl": 64 << 20}
# Levels of nesting a config or summary may have (cnnlab writes 4): no RecursionError later.
MAX_DEPTH = 64
UNREADABLE = "unreadable"  # the status of a run whose config.yaml or summary.json cannot be read

# Table headers usable as keys (`--sort time`) besides summary keys and dotted config keys.
ALIASES = {
    "data": "data.name",
    "model": "model.name",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "epochs": "epochs_run",
    "time": "train_seconds",
}
ROW_KEYS = ("name", "date", "path")

# Not config.safe_yaml's reader (what users type: 4.5 ms for a 1.6 KB config, with line-numbered
# errors): run directories are read by the thousand, and libyaml with the alias, size and depth
# checks here takes 1.8 ms.
try:  # libyaml parses config.yaml ~10x faster; it matters for the first listing of many runs
    _YamlLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YamlLoader = yaml.SafeLoader


class Run:
    """One run directory: `config` (config.yaml as written, nested), `summary` (summary.json; {}
    while the run has none), `metrics` (metrics.jsonl, a dict per epoch), and the views a table
    needs: `flat_config` (dotted keys), `scalars` (the summary's scalars, flattened, with the
    current `status`), `get(key)`. Each is read from the directory when first used; a value
    given to the constructor is used instead (the index gives flat_config and scalars)."""

    __slots__ = (
        "_config",
        "_path",
        "_date",
        "_flat",
        "_metrics",
        "_scalars",
        "_status",
        "_summary",
        "name",
    )

    def __init__(
        self,
        path: str | Path,
        config: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        metrics: list[dict[str, Any]] | None = None,
        *,
        name: str | None = None,
        date: str | None = None,
        flat_config: Any = None,  # a dict, or a Mapping that reads itself when asked (the index's)
        scalars: dict[str, Any] | None = None,  # without "status" for a run without a summary
    ):
        self._path = path  # a str from the index until asked for: 10,000 Paths cost 0.1 s
        if name is None:
            self._path = Path(path)
            name = self._path.name
        self.name = name  # "sweep/trial-3" when listed from a root
        self._date, self._config, self._summary, self._metrics = date, config, summary, metrics
        self._flat, self._scalars, self._status = flat_config, scalars, None

    def __repr__(self) -> str:
        return f"Run({str(self._path)!r})"

    @property
    def path(self) -> Path:
        if not isinstance(self._path, Path):
            self._path = Path(self._path)
        return self._path

    @property
    def date(self) -> str:
        """'2026-11-23 12:25:13', from the directory's name, else config.yaml's mtime; or ''."""
        if self._date is None:
            started = run_started(self.path)
            self._date = "" if started is None else f"{started:%Y-%m-%d %H:%M:%S}"
        return self._date

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = read_config(self.path / "config.yaml")
        return self._config

    @property
    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = read_summary(self.path / "summary.json")
        return self._summary

    @property
    def metrics(self) -> list[dict[str, Any]]:
        if self._metrics is None:
            self._metrics = read_metrics(self.path / "metrics.jsonl")
        return self._metrics

    @property
    def flat_config(self) -> Any:
        """{"optim.lr": 0.003, ...}: lists and scalars are leaves, as in overrides."""
        if self._flat is None:
            self._flat = flat(self.config, self.path / "config.yaml")
        return self._flat

    @property
    def scalars(self) -> Mapping[str, Any]:
        """The summary's numbers and strings, flattened ({"versions.torch": ...}); for a run
        without summary.json its progress from metrics.jsonl (epochs_run, best/final_val_acc).
        Always with "status", as `status` tells it."""
        if self._scalars is None:
            self._scalars = stored_scalars(self.path, self.summary)
        if "status" not in self._scalars:
            self._scalars = ChainMap({"status": self.status}, self._scalars)
        return self._scalars

    @property
    def status(self) -> str:
        """summary.json's status; without one, `running` while a process holds the run's lock
        (or its lock is another host's, which this one cannot test), else `killed`;
        `unreadable` when config.yaml or summary.json cannot be read."""
        if self._status is None:
            known = self._scalars
            if known is None:
                try:
                    known = self.summary
                    self.config  # noqa: B018 - an unreadable config makes an unreadable run
                except CnnlabError:
                    known = {"status": UNREADABLE}
            status = known.get("status")
            self._status = str(status) if status is not None else writer_status(self.path)
        return self._status

    @property
    def writer(self) -> Holder | None:
        """The process writing this run, as its lock names it, while the run is `running`."""
        return read_holder(self.path) if self.status == "running" else None

    def get(self, key: str, default: Any = None) -> Any:
        """A row field (name, date, path), a table alias (lr, time), a summary scalar or a
        dotted config key, in that order."""
        key = ALIASES.get(key, key)
        if key in ROW_KEYS:
            return str(self._path) if key == "path" else getattr(self, key)
        scalars = self.scalars
        if key in scalars:
            return scalars[key]
        return self.flat_config.get(key, default)


def load_run(path: str | Path) -> Run:
    """The run in `path`, its config.yaml and summary.json read and checked (metrics.jsonl is
    read when `metrics` is first used). CnnlabError, one line naming the file, if either is
    missing or unreadable."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{path}: not a run directory (no config.yaml)")
    run = Run(path)
    run.config  # noqa: B018 - read now, so a damaged run fails here and not halfway through
    run.summary  # noqa: B018
    return run


# ---------------------------------------------------------------- the files, read with care


def read_capped(path: Path) -> bytes | None:
    """The bytes of a run's file, None if it does not exist; CnnlabError if it is not a regular
    file or is larger than MAX_BYTES allows for its name."""
    limit = MAX_BYTES.get(path.name, 16 << 20)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _unreadable(path, e.strerror) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory
        os.close(fd)
        raise _unreadable(path, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # +1: a file that grew past the limit after fstat is refused too
    if len(data) > limit:
        raise _unreadable(path, f"larger than the {limit >> 20} MiB it may be")
    return data


def read_config(path: Path) -> dict[str, Any]:
    data = read_capped(path)
    if data is None:
        raise CnnlabError(f"{path.parent}: not a run directory (no config.yaml)")
    try:  # most configs are as cnnlab wrote them: read those without PyYAML's nodes
        config = load_dumped(data.decode())
    except UnicodeDecodeError:
        config = None
    if config is None:
        config = _read_yaml(data, path)
    _check_depth(config, path)
    return config


def _read_yaml(data: bytes, path: Path) -> dict[str, Any]:
    """Any other config.yaml, through libyaml: no aliases, a non-empty mapping."""
    if b"*" in data and any(isinstance(e, yaml.AliasEvent) for e in _events(data, path)):
        raise _unreadable(path, "YAML aliases, which cnnlab never writes")
    try:
        config = yaml.load(data, Loader=_YamlLoader)
    except RecursionError:
        raise _unreadable(path, "nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - PyYAML raises ValueError, IndexError... on bad tags
        raise _unreadable(path, _first_line(e)) from None
    if not isinstance(config, dict) or not config:
        what = "empty" if config is None else f"a {type(config).__name__}"
        raise _unreadable(path, f"{what}, not a mapping of config sections")
    return config


def _check_depth(value: Any, path: Path) -> None:
    if nested_deeper_than(value, MAX_DEPTH):
        raise _unreadable(path, f"nested more than {MAX_DEPTH} levels deep")


def _events(data: bytes, path: Path):
    try:
        yield from yaml.parse(data, Loader=_YamlLoader)
    except yaml.YAMLError as e:
        raise _unreadable(path, _first_line(e)) from None


def read_summary(path: Path) -> dict[str, Any]:
    data = read_capped(path)
    if data is None:
        return {}
    summary = _json(data, path)
    if not isinstance(summary, dict):
        raise _unreadable(path, "not a JSON object")
    _check_depth(summary, path)
    return summary


def read_metrics(path: Path, partial_ok: bool = False) -> list[dict[str, Any]]:
    """One dict per epoch. With `partial_ok`, a last line without its newline that does not
    parse is left out: the line a running trainer is appending right now."""
    data = read_capped(path) or b""
    lines = data.splitlines()
    if partial_ok and lines and not data.endswith(b"\n"):
        try:
            json.loads(lines[-1])
        except (ValueError, RecursionError):
            lines.pop()
    rows = []
    for line in lines:
        if line.strip():
            row = _json(line, path)
            if not isinstance(row, dict):
                raise _unreadable(path, "a line is not a JSON object")
            rows.append(row)
    return rows


def _json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise _unreadable(path, str(e)) from None


def _unreadable(path: Path, why: str) -> CnnlabError:
    """'runs/x: unreadable run directory (summary.json: not a JSON object)'."""
    return CnnlabError(f"{path.parent}: unreadable run directory ({path.name}: {why})")


def _first_line(error: Exception) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem and error.problem_mark:
        return f"{error.problem}, line {error.problem_mark.line + 1}"
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ---------------------------------------------------------------- the table's views


def flat(config: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        return flatten(config)
    except RecursionError:
        raise _unreadable(path, "nested too deeply") from None


def stored_scalars(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of a run's results: the summary's scalars, or, before there is a
    summary, its progress (without a status: that is the lock's, read when listed)."""
    if summary.get("status") is None:
        return progress(path / "metrics.jsonl")
    try:
        items = flatten(summary).items()
    except RecursionError:
        raise _unreadable(path / "summary.json", "nested too deeply") from None
    return {k: v for k, v in items if v is None or isinstance(v, bool | int | float | str)}


def progress(metrics: Path) -> dict[str, Any]:
    """How far a run without a summary got: the training is still on, or was killed."""
    accs = []
    epochs = 0
    try:
        data = read_capped(metrics) or b""
    except CnnlabError:
        data = b""
    for line in data.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # the line the trainer is appending right now
            continue
        if isinstance(row, dict):
            epochs += 1
            if isinstance(row.get("val_acc"), int | float):
                accs.append(row["val_acc"])
    return {
        "epochs_run": epochs,
        "best_val_acc": max(accs) if accs else None,
        "final_val_acc": accs[-1] if accs else None,
    }


def writer_status(path: Path) -> str:
    """`running` or `killed` for a run without a summary, from its lock (see RunDir.lock)."""
    if writer_alive(path):
        return "running"
    holder = read_holder(path)
    # flock says nothing about a process on another host: trust the lock's word there
    return "running" if holder is not None and not holder.here else "killed"
