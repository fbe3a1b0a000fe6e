"""The run index: find the run directories under a root and read each into a Run with the
table's views filled in (flattened config, summary scalars), through a cache.

The cache is <root>/.cnnlab-index.sqlite, one row per run keyed by its path under the root and
stamped with the mtime, size and inode of its config.yaml and summary.json (and metrics.jsonl
while there is no summary): a listing stats those files and reads only the runs whose stamp
changed. A row keeps a small JSON head (HEAD_SCALARS and TABLE_KEYS: what the table shows and
sorts by), decoded for every run listed, and the run's whole scalars and flattened config as
JSON, fetched and decoded only when a filter, sort or export asks for another key. The cache is
safe to delete; a damaged file is rebuilt, a damaged or foreign row is read again from its run,
and a root where it cannot be written still lists.
A run's status while it has no summary comes from its lock at every listing, never the cache.
cnnlab.track.runs filters, sorts, compares and exports the Runs.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import stat
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnlab.config.defaults import RUN_DIR
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.track.registry import ALIASES, ROW_KEYS, UNREADABLE, Run, flat, stored_scalars

__all__ = [
    "ALIASES",
    "INDEX_NAME",
    "INDEX_VERSION",
    "HEAD_SCALARS",
    "ROW_KEYS",
    "TABLE_KEYS",
    "WATCHED",
    "find_run_dirs",
    "gc_paused",
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
# Summary scalars kept beside them: what the table shows and sorts by most.
HEAD_SCALARS = (
    "status",
    "epochs_run",
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "train_seconds",
)
_TABLE_KEYS = frozenset(TABLE_KEYS)
# The summary may have a table's config key too (data.name): the head says which it has.
_HEAD_KEYS = frozenset(HEAD_SCALARS) | _TABLE_KEYS
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
    other = _stat(path + "/summary.json") or _stat(path + "/metrics.jsonl")
    stamp = f"{config.st_mtime_ns}:{config.st_size}:{config.st_ino}|"
    return stamp + ("-" if other is None else f"{other.st_mtime_ns}:{other.st_size}:{other.st_ino}")


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


def _entry(path: str) -> tuple[str, str, str, str]:
    """A run as the index stores it: date, head (the HEAD_SCALARS and TABLE_KEYS it has),
    stored scalars, flattened config; the last three as JSON."""
    date, flat_config, scalars = read_fields(Path(path))
    head = {
        "s": {k: scalars[k] for k in _HEAD_KEYS if k in scalars},
        "c": {k: flat_config[k] for k in TABLE_KEYS if k in flat_config},
    }
    return date, _dumps(head), _dumps(scalars), _dumps(flat_config)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)  # default: YAML dates


def _entries(paths: list[str]) -> Iterator[tuple[str, str, str, str]]:
    """_entry of each path, in order: in parallel for a first listing of many runs (parsing
    config.yaml costs ~1 ms a run). Not after torch was imported: forking it is unsafe."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if len(paths) < PARALLEL_FROM or workers < 2 or "torch" in sys.modules:
        yield from map(_entry, paths)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(_entry, paths, chunksize=max(16, len(paths) // (8 * workers)))


class _Cached(Mapping):
    """A dict of an index row: `keys` answered from the row's head (decoded for every run
    listed), any other key from the whole dict, fetched from the index and decoded on first
    use (`load`), or read again from the run where that is damaged."""

    __slots__ = ("_full", "_keys", "_known", "_load")

    def __init__(self, keys: frozenset[str], known: dict[str, Any], load: Callable[[], dict]):
        self._keys, self._known, self._load, self._full = keys, known, load, None

    def _all(self) -> dict[str, Any]:
        if self._full is None:
            self._full = self._load()
        return self._full

    def __getitem__(self, key: str) -> Any:
        return self._known[key] if key in self._keys else self._all()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._known if key in self._keys else key in self._all()

    def get(self, key: str, default: Any = None) -> Any:  # Mapping's raises and catches
        return (self._known if key in self._keys else self._all()).get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _from_row(path: str, name: str, row: tuple, head: Any, store: _Store | None) -> Run | None:
    """The Run an index row stands for (`head` decoded), None when the row is not one this
    version wrote."""
    date = row[2]
    if not (isinstance(head, dict) and isinstance(date, str)):
        return None
    scalars, known = head.get("s"), head.get("c")
    if not (isinstance(scalars, dict) and isinstance(known, dict)):
        return None
    if store is None:  # a row just read from the run: its JSON is at hand, decoded if asked
        full_scalars = _Cached(_HEAD_KEYS, scalars, lambda: json.loads(row[4]))
        full_config = _Cached(_TABLE_KEYS, known, lambda: json.loads(row[5]))
    else:
        full_scalars = _Cached(_HEAD_KEYS, scalars, lambda: store.full(name, 0, path))
        full_config = _Cached(_TABLE_KEYS, known, lambda: store.full(name, 1, path))
    return Run(path, name=name, date=date, flat_config=full_config, scalars=full_scalars)


def _decode(texts: list[Any]) -> list[Any]:
    """json.loads of each text, None where one is not JSON; in one call while all are well
    (10,000 calls cost ~0.1 s more)."""
    if all(isinstance(t, str) for t in texts):
        try:
            values = json.loads(f"[{','.join(texts)}]")
        except (ValueError, RecursionError):
            values = None
        if isinstance(values, list) and len(values) == len(texts):
            return values
    return [_loads(t) for t in texts]


def _loads(text: Any) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None


# ---------------------------------------------------------------- the whole root


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a block that builds objects by the ten
    thousand and makes no cycles (reference counting frees them all): its passes over the
    growing heap were ~0.2 s of a 1.1 s listing of 10,000 runs (2-core EPYC)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def index_runs(root: str | Path = RUN_DIR, cache: bool = True) -> list[Run]:
    """Every run under `root` (see find_run_dirs), read through <root>/.cnnlab-index.sqlite: a
    run whose files have the stamp recorded there is not read again. Runs that appeared,
    changed or vanished update the index."""
    root = Path(root)
    with gc_paused():  # not around reading runs below: PyYAML's loaders make cycles
        found = _scan(root)
        store = _Store(root / INDEX_NAME) if cache else None
        old = store.load() if store else {}
        runs: list[Run | None] = []
        cached: list[tuple[int, str, str, tuple]] = []  # (position, name, path, row) to trust
        stale: list[tuple[int, str, str, str]] = []  # (position, name, path, stamp) to read
        for name, path, config in found:
            stamp = _stamp(path, config)
            row = old.get(name)
            if row and row[1] == stamp:
                cached.append((len(runs), name, path, row))
            else:
                stale.append((len(runs), name, path, stamp))
            runs.append(None)
        heads = _decode([c[3][3] for c in cached])
        for (i, name, path, row), head in zip(cached, heads, strict=True):
            runs[i] = _from_row(path, name, row, head, store)
            if runs[i] is None:  # a damaged or foreign row: read the run again
                stale.append((i, name, path, row[1]))
    fresh = []
    for (i, name, path, stamp), entry in zip(stale, _entries([s[2] for s in stale]), strict=True):
        row = (name, stamp, *entry)
        runs[i] = _from_row(path, name, row, json.loads(entry[1]), None)
        fresh.append(row)
    if store:
        store.save(fresh, old.keys() - {name for name, _, _ in found})
    return runs  # type: ignore[return-value]


class _Store:
    """The SQLite file. Every failure (locked by another listing, read-only root, full disk,
    not a database) means listing without the cache, never an error."""

    COLUMNS = "name TEXT PRIMARY KEY, stamp TEXT, date TEXT, head TEXT, scalars TEXT, config TEXT"

    def __init__(self, file: Path):
        self.file = file
        self.db: sqlite3.Connection | None = None
        self.fetched = 0  # runs whose whole JSON was asked for
        self.texts: dict[str, tuple] | None = None  # every run's, once many were asked for

    def load(self) -> dict[str, tuple]:
        """{name: (name, stamp, date, head)} of every cached run."""
        for attempt in range(2):
            try:
                return self._load()
            except sqlite3.DatabaseError as e:
                self.close()
                if getattr(e, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                    break  # another listing is writing it
                if attempt == 0 and _regular_or_missing(self.file):
                    self.file.unlink(missing_ok=True)  # damaged, or not ours: rebuild it
            except (sqlite3.Error, OSError):
                break
        self.close()
        return {}

    def _load(self) -> dict[str, tuple]:
        if not _regular_or_missing(self.file):  # a link or a FIFO under our name: leave it be
            return {}
        self.db = sqlite3.connect(self.file, timeout=2.0, isolation_level=None)
        # kept open for the Runs' lazy fetches (see full); closed when the last one goes
        weakref.finalize(self, self.db.close)
        self.db.execute("PRAGMA synchronous = NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            self.db.executescript(
                f"BEGIN IMMEDIATE; DROP TABLE IF EXISTS runs; CREATE TABLE runs ({self.COLUMNS});"
                f" PRAGMA user_version = {INDEX_VERSION}; COMMIT;"
            )
        rows = self.db.execute("SELECT name, stamp, date, head FROM runs").fetchall()
        return {row[0]: row for row in rows if isinstance(row[0], str)}

    def save(self, fresh: list[tuple], gone: set[str]) -> None:
        if self.db is None or not (fresh or gone):
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM runs WHERE name = ?", [(n,) for n in gone])
            self.db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", fresh)
            self.db.execute("COMMIT")
            (self.file.parent / OLD_INDEX).unlink(missing_ok=True)
        except (sqlite3.Error, OSError):
            # another listing holds the lock, or the disk is full: the next one writes it
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def full(self, name: str, column: int, path: str) -> dict[str, Any]:
        """A cached run's whole scalars (column 0) or flattened config (1); read again from
        the run if the index no longer has it right."""
        try:
            value = json.loads(self._texts(name)[column])
        except (sqlite3.Error, ValueError, TypeError, IndexError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        return read_fields(Path(path))[2 if column == 0 else 1]

    def _texts(self, name: str) -> tuple:
        """(scalars, config) JSON of a run: one query a run for the first few asked, then one
        for all (a filter on a key outside the head asks for every run's)."""
        if self.texts is None and self.db is not None:
            self.fetched += 1
            if self.fetched <= 64:
                query = "SELECT scalars, config FROM runs WHERE name = ?"
                return self.db.execute(query, (name,)).fetchone() or ()
            rows = self.db.execute("SELECT name, scalars, config FROM runs").fetchall()
            self.texts = {row[0]: row[1:] for row in rows}
        return (self.texts or {}).get(name, ())

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
