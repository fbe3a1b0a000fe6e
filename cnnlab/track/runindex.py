"""The run index: find the run directories under a root and read each into a Run with the
table's views filled in (flattened config, summary scalars), through a cache.

The cache is <root>/.cnnlab-index.sqlite, one row per run keyed by its path under the root and
stamped with the mtime, size and inode of its config.yaml and summary.json (and metrics.jsonl
while there is no summary): a listing stats those files and reads only the runs whose stamp
changed. A row keeps the summary's scalars and the config keys the table shows as a small JSON
object, decoded for every run listed, and the whole flattened config as JSON decoded only when a
filter or sort asks for another key. The cache is safe to delete; a damaged file is rebuilt, a
damaged or foreign row re-read from its run, and a root where it cannot be written still lists.
A run's status while it has no summary comes from its lock at every listing, never the cache.
cnnlab.track.runs filters, sorts, compares and exports the Runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cnnlab.config.schema import DEFAULT_RUN_DIR
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.track.registry import ALIASES, ROW_KEYS, UNREADABLE, Run, flat, stored_scalars

__all__ = [
    "ALIASES",
    "INDEX_NAME",
    "INDEX_VERSION",
    "ROW_KEYS",
    "TABLE_KEYS",
    "WATCHED",
    "find_run_dirs",
    "index_runs",
    "read_fields",
    "read_row",
]

INDEX_NAME = ".cnnlab-index.sqlite"
INDEX_VERSION = 2  # PRAGMA user_version; another version's table is dropped and rebuilt
OLD_INDEX = ".cnnlab-index.json"  # version 1's cache, removed once this one is written
WATCHED = ("config.yaml", "summary.json", "metrics.jsonl")  # a change to any re-reads the run
# Config keys `runs list` shows, kept beside the scalars so that listing decodes no config.
TABLE_KEYS = ("data.name", "model.name", "model.backbone", "optim.name", "optim.lr", "train.epochs")
# From this many runs to read (a first listing), they are read by one process per core.
PARALLEL_FROM = 400


def find_run_dirs(root: str | Path) -> list[Path]:
    """Immediate subdirectories of `root` with a config.yaml, and those one level deeper when
    the subdirectory itself is not a run (a sweep's or a group's folder of runs)."""
    return [Path(path) for _, path, _ in _scan(Path(root))]


def _scan(root: Path) -> list[tuple[str, str, os.stat_result]]:
    """(name under root, path, stat of config.yaml) of each run, sorted by name."""
    if not root.is_dir():
        raise ConfigError(f"--root {root}: no such directory")
    found = []
    for name, path in _subdirs(root, fatal=True):
        config = _stat(path + "/config.yaml")
        if config is not None:
            found.append((name, path, config))
            continue
        for sub, sub_path in _subdirs(path):
            config = _stat(sub_path + "/config.yaml")
            if config is not None:
                found.append((f"{name}/{sub}", sub_path, config))
    found.sort(key=lambda f: f[0])
    return found


def _subdirs(folder: str | Path, fatal: bool = False) -> list[tuple[str, str]]:
    try:
        with os.scandir(folder) as entries:
            # dot-dirs hold caches and temp files, never runs
            return [(e.name, e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError as e:
        if fatal:
            raise ConfigError(f"--root {folder}: cannot list it ({e.strerror})") from None
        return []


def _stat(path: str) -> os.stat_result | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _stamp(path: str, config: os.stat_result) -> str:
    """What must stay equal for a cached row to stand for the run as it is now."""
    parts = [config]
    summary = _stat(path + "/summary.json")
    parts.append(summary if summary is not None else _stat(path + "/metrics.jsonl"))
    return "|".join("-" if s is None else f"{s.st_mtime_ns}:{s.st_size}:{s.st_ino}" for s in parts)


# ---------------------------------------------------------------- reading one run


def read_fields(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(date, flattened config, stored scalars) of a run; a run that cannot be read is listed
    with status `unreadable` rather than hiding the others from the table."""
    run = Run(path)
    try:
        flat_config = flat(run.config, path / "config.yaml")
        scalars = stored_scalars(path, run.summary)
    except CnnlabError:
        flat_config, scalars = {}, {"status": UNREADABLE}
    return run.date, flat_config, scalars


def read_row(path: str | Path, name: str | None = None) -> Run:
    """One run directory read for the table (config and summary, not its metric rows)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{path}: not a run directory (no config.yaml)")
    date, flat_config, scalars = read_fields(path)
    return Run(path, name=name, date=date, flat_config=flat_config, scalars=scalars)


def _entry(path: str) -> tuple[str, str, str]:
    """A run as the index stores it: date, head (scalars and TABLE_KEYS), flattened config."""
    date, flat_config, scalars = read_fields(Path(path))
    head = {"s": scalars, "c": {k: flat_config[k] for k in TABLE_KEYS if k in flat_config}}
    return date, _dumps(head), _dumps(flat_config)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)  # default: YAML dates


def _entries(paths: list[str]) -> Iterator[tuple[str, str, str]]:
    """_entry of each path, in order: in parallel for a first listing of many runs (parsing
    config.yaml costs ~1 ms a run). Not after torch was imported: forking it is unsafe."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if len(paths) < PARALLEL_FROM or workers < 2 or "torch" in sys.modules:
        yield from map(_entry, paths)
        return
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(_entry, paths, chunksize=max(16, len(paths) // (8 * workers)))


class _CachedConfig(Mapping):
    """A flattened config from the index: TABLE_KEYS answered from the row's head, any other
    key from the whole config, decoded on first use (or re-read from the run if damaged)."""

    __slots__ = ("_full", "_known", "_path", "_text")

    def __init__(self, known: dict[str, Any], text: str, path: Path):
        self._known, self._text, self._path, self._full = known, text, path, None

    def _all(self) -> dict[str, Any]:
        if self._full is None:
            try:
                full = json.loads(self._text)
            except (ValueError, TypeError, RecursionError):
                full = None
            self._full = full if isinstance(full, dict) else read_fields(self._path)[1]
        return self._full

    def __getitem__(self, key: str) -> Any:
        return self._known[key] if key in TABLE_KEYS else self._all()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._known if key in TABLE_KEYS else key in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _from_row(path: Path, name: str, row: tuple) -> Run | None:
    """The Run a cached row stands for, None when the row is not one this version wrote."""
    _, _, date, head, config = row
    try:
        head = json.loads(head)
        scalars, known = head["s"], head["c"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if not (isinstance(date, str) and isinstance(config, str)):
        return None
    if not (isinstance(scalars, dict) and isinstance(known, dict)):
        return None
    return Run(
        path,
        name=name,
        date=date,
        flat_config=_CachedConfig(known, config, path),
        scalars=scalars,
    )


# ---------------------------------------------------------------- the whole root


def index_runs(root: str | Path = DEFAULT_RUN_DIR, cache: bool = True) -> list[Run]:
    """Every run under `root` (see find_run_dirs), read through <root>/.cnnlab-index.sqlite: a
    run whose files have the stamp recorded there is not read again. Runs that appeared,
    changed or vanished update the index."""
    root = Path(root)
    found = _scan(root)
    store = _Store(root / INDEX_NAME) if cache else None
    old = store.load() if store else {}
    runs: list[Run] = []
    stale: list[tuple[int, str, str, str]] = []  # (position, name, path, stamp) to read
    for name, path, config in found:
        stamp = _stamp(path, config)
        row = old.get(name)
        run = _from_row(Path(path), name, row) if row and row[1] == stamp else None
        if run is None:
            stale.append((len(runs), name, path, stamp))
        runs.append(run)
    fresh = []
    for (i, name, path, stamp), (date, head, config) in zip(
        stale, _entries([s[2] for s in stale]), strict=True
    ):
        runs[i] = _from_row(Path(path), name, (name, stamp, date, head, config))
        fresh.append((name, stamp, date, head, config))
    if store:
        gone = old.keys() - {name for name, _, _ in found}
        store.save(fresh, gone)
    return runs


class _Store:
    """The SQLite file. Every failure (locked by another listing, read-only root, full disk,
    not a database) means listing without the cache, never an error."""

    def __init__(self, file: Path):
        self.file = file
        self.db: sqlite3.Connection | None = None

    def load(self) -> dict[str, tuple]:
        for attempt in range(2):
            try:
                return self._load()
            except sqlite3.DatabaseError:  # damaged, or not a database: ours to rebuild
                self.close()
                if attempt == 0 and _regular_or_missing(self.file):
                    self.file.unlink(missing_ok=True)
            except (sqlite3.Error, OSError):
                break
        self.close()
        return {}

    def _load(self) -> dict[str, tuple]:
        if not _regular_or_missing(self.file):  # a link or a FIFO under our name: leave it be
            return {}
        self.db = sqlite3.connect(self.file, timeout=2.0, isolation_level=None)
        self.db.execute("PRAGMA synchronous = NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            self.db.executescript(
                "BEGIN IMMEDIATE; DROP TABLE IF EXISTS runs; CREATE TABLE runs (name TEXT PRIMARY"
                " KEY, stamp TEXT, date TEXT, head TEXT, config TEXT);"
                f" PRAGMA user_version = {INDEX_VERSION}; COMMIT;"
            )
        rows = self.db.execute("SELECT name, stamp, date, head, config FROM runs").fetchall()
        return {row[0]: row for row in rows if isinstance(row[0], str)}

    def save(self, fresh: list[tuple], gone: set[str]) -> None:
        if self.db is None or not (fresh or gone):
            return self.close()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM runs WHERE name = ?", [(n,) for n in gone])
            self.db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)", fresh)
            self.db.execute("COMMIT")
            (self.file.parent / OLD_INDEX).unlink(missing_ok=True)
        except (sqlite3.Error, OSError):
            pass  # another listing holds the lock, or the disk is full: the next one writes it
        finally:
            self.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _regular_or_missing(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False
