"""The run index: find the run directories under a root and read each into a RunRow (its
flattened config and the scalars of its summary), through a cache.

Listing reads only config.yaml and summary.json (metrics.jsonl only for a run without a summary
yet), and caches what it read in <root>/.cnnlab-index.json, keyed by each file's mtime and size,
so a second listing of 1,000 runs stats files instead of parsing them. cnnlab.track.runs filters,
sorts, compares and exports the rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab.atomic import write_text_atomic
from cnnlab.config.load import flatten
from cnnlab.config.names import run_started
from cnnlab.config.schema import DEFAULT_RUN_DIR
from cnnlab.errors import CnnlabError, ConfigError

INDEX_NAME = ".cnnlab-index.json"
INDEX_VERSION = 1
WATCHED = ("config.yaml", "summary.json", "metrics.jsonl")  # a change to any re-reads the run

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

try:  # libyaml parses config.yaml ~10x faster; it matters for the first listing of many runs
    _YamlLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YamlLoader = yaml.SafeLoader


@dataclass(frozen=True)
class RunRow:
    """One run as the table sees it: flattened config and the scalars of its summary."""

    path: Path
    name: str  # relative to the listed root: "20261123-122513-digits-cnn" or "sweep/trial-3"
    date: str  # "2026-11-23 12:25:13", from the directory name, else config.yaml's mtime
    config: dict[str, Any]  # dotted keys: {"optim.lr": 0.003, ...}
    summary: dict[str, Any]  # scalars only; a run without summary.json has status "running"

    def get(self, key: str, default: Any = None) -> Any:
        key = ALIASES.get(key, key)
        if key in ROW_KEYS:
            return str(self.path) if key == "path" else getattr(self, key)
        if key in self.summary:
            return self.summary[key]
        return self.config.get(key, default)


def find_run_dirs(root: str | Path) -> list[Path]:
    """Immediate subdirectories of `root` with a config.yaml, and those one level deeper when
    the subdirectory itself is not a run (a sweep's folder of trials)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--root {root}: no such directory")
    found = []
    for entry in _subdirs(root):
        if os.path.isfile(os.path.join(entry, "config.yaml")):
            found.append(Path(entry))
        else:
            found += [Path(sub) for sub in _subdirs(entry) if os.path.isfile(sub + "/config.yaml")]
    return sorted(found)


def _subdirs(folder: str | Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            # dot-dirs hold caches and temp files, never runs
            return [e.path for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []


def _file_key(path: Path) -> list[list[int] | None]:
    key: list[list[int] | None] = []
    for name in WATCHED:
        try:
            st = os.stat(path / name)
        except OSError:
            key.append(None)
        else:
            key.append([st.st_mtime_ns, st.st_size])
    return key


def read_row(path: str | Path, name: str | None = None) -> RunRow:
    """Read one run directory for the table (config and summary, not its metric rows)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{path}: not a run directory (no config.yaml)")
    return RunRow(path=path, name=name or path.name, **_read_fields(path))


def _read_fields(path: Path) -> dict[str, Any]:
    """date, config and summary of a run, as JSON-able values (they go into the index)."""
    try:
        config = yaml.load((path / "config.yaml").read_text(), Loader=_YamlLoader)
        summary_file = path / "summary.json"
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
        else:
            summary = _running_summary(path / "metrics.jsonl")
        if not isinstance(config, dict) or not isinstance(summary, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError):
        # One bad directory among hundreds should not hide the others from the table.
        config, summary = {}, {"status": "unreadable"}
    return {
        "date": _date(path),
        "config": flatten(config),
        "summary": {
            k: v
            for k, v in flatten(summary).items()
            if v is None or isinstance(v, bool | int | float | str)
        },
    }


def _running_summary(metrics: Path) -> dict[str, Any]:
    """What the table shows for a run that has written no summary.json yet: the training is
    still on, or was killed before it could write one."""
    rows = []
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the line the trainer is appending right now
                continue
    accs = [r["val_acc"] for r in rows if r.get("val_acc") is not None]
    return {
        "status": "running",
        "epochs_run": len(rows),
        "best_val_acc": max(accs) if accs else None,
        "final_val_acc": accs[-1] if accs else None,
    }


def _date(path: Path) -> str:
    started = run_started(path)
    return "" if started is None else f"{started:%Y-%m-%d %H:%M:%S}"


def index_runs(root: str | Path = DEFAULT_RUN_DIR, cache: bool = True) -> list[RunRow]:
    """Every run under `root` (see find_run_dirs), read through <root>/.cnnlab-index.json: a run
    whose config.yaml, summary.json and metrics.jsonl have the mtime and size recorded there is
    not read again. Runs that appeared, changed or vanished update the index."""
    root = Path(root)
    dirs = find_run_dirs(root)
    index_file = root / INDEX_NAME
    old = _load_index(index_file) if cache else {}
    entries: dict[str, Any] = {}
    rows = []
    for path in dirs:
        rel = path.relative_to(root).as_posix()
        key = _file_key(path)
        entry = old.get(rel)
        if entry is None or entry["key"] != key:
            entry = {"key": key, **_read_fields(path)}
        entries[rel] = entry
        rows.append(
            RunRow(
                path=path,
                name=rel,
                date=entry["date"],
                config=entry["config"],
                summary=entry["summary"],
            )
        )
    if cache and entries != old:
        text = json.dumps({"version": INDEX_VERSION, "runs": entries}, separators=(",", ":"))
        try:
            write_text_atomic(index_file, text)
        except OSError:  # a read-only root still lists; it just is not cached
            pass
    return rows


def _load_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if data.get("version") == INDEX_VERSION and isinstance(data.get("runs"), dict):
            return data["runs"]
    except (OSError, ValueError, AttributeError):
        pass  # missing, half-written by an old version, or edited by hand: rebuild it
    return {}
