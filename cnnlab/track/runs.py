"""Many run directories at once: filter, sort, compare, plot and export them.

`cnnlab runs` formats what these functions return; the report and sweeps reuse them. The rows
come from the cached index of cnnlab.track.runindex (index_runs, read_row), re-exported here.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab.atomic import atomic_path
from cnnlab.config.safe_yaml import load_yaml, quote
from cnnlab.config.schema import DEFAULT_RUN_DIR
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.registry import did_you_mean
from cnnlab.track.curves import differing_keys
from cnnlab.track.runindex import (
    ALIASES,
    INDEX_NAME,
    INDEX_VERSION,
    ROW_KEYS,
    WATCHED,
    RunRow,
    find_run_dirs,
    index_runs,
    read_row,
)

__all__ = [
    "ALIASES",
    "COMPARED",
    "INDEX_NAME",
    "INDEX_VERSION",
    "ROW_KEYS",
    "SUMMARY_KEYS",
    "WATCHED",
    "Comparison",
    "RunRow",
    "check_key",
    "compare",
    "descending",
    "export_frame",
    "filter_rows",
    "find_run_dirs",
    "index_runs",
    "known_keys",
    "parse_filter",
    "plot_metrics",
    "plot_runs",
    "read_row",
    "resolve_run",
    "sort_rows",
    "write_frame",
]

# summary.json keys, so a filter on them is valid even before any run has finished.
SUMMARY_KEYS = (
    "status",
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "best_epoch",
    "monitor",
    "best_monitor_value",
    "epochs_run",
    "steps",
    "train_seconds",
    "images_per_second",
    "device",
    "loader",
    "rollbacks",
)
COMPARED = (
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "status",
)
_FILTER = re.compile(r"^([A-Za-z0-9_.\-]+?)\s*(!=|>=|<=|=|>|<)(.*)$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_MISSING = object()


# ---------------------------------------------------------------- filtering and sorting


def known_keys(rows: Iterable[RunRow]) -> list[str]:
    """Every key a filter or sort may name: row fields, table aliases, summary keys and the
    dotted config keys of the schema and of the runs (old runs may have keys no longer in it)."""
    from cnnlab.config.schema import valid_keys

    keys = dict.fromkeys([*ROW_KEYS, *ALIASES, *SUMMARY_KEYS, *valid_keys()])
    for row in rows:
        keys |= dict.fromkeys(row.summary)
        keys |= dict.fromkeys(row.config)
    return list(keys)


def check_key(key: str, rows: list[RunRow], option: str) -> None:
    """ConfigError naming the key (and a close match) unless some run or the schema has it."""
    key = ALIASES.get(key, key)
    if key in ROW_KEYS or any(key in r.summary or key in r.config for r in rows):
        return
    keys = known_keys(rows)
    if key not in keys:
        raise ConfigError(f"{option}: unknown key {key}{did_you_mean(key, keys)}")


def parse_filter(text: str) -> tuple[str, str, Any]:
    """'optim.lr=0.1' -> ('optim.lr', '=', 0.1): the value is parsed as YAML, as overrides are."""
    match = _FILTER.match(text.strip())
    if not match:
        raise ConfigError(f"--filter {text}: expected KEY=VALUE (or !=, >, >=, <, <=)")
    key, op, raw = match.groups()
    try:
        value = load_yaml(raw, f"--filter {quote(text)}") if raw.strip() else None
    except yaml.YAMLError:
        value = raw.strip()
    return key, op, value


def filter_rows(rows: list[RunRow], filters: Iterable[str]) -> list[RunRow]:
    """The runs that match every filter; a run without the key never matches."""
    for text in filters:
        key, op, value = parse_filter(text)
        check_key(key, rows, f"--filter {text}")
        rows = [r for r in rows if _matches(r.get(key, _MISSING), op, value)]
    return rows


def _matches(have: Any, op: str, want: Any) -> bool:
    if have is _MISSING:
        return False
    if isinstance(have, int | float) and not isinstance(have, bool) and isinstance(want, str):
        try:  # YAML 1.1 reads 1e-3 as a string; the config schema made it a float
            want = float(want)
        except ValueError:
            return False
    if op in ("=", "!=") and isinstance(have, list | tuple) and isinstance(want, list | tuple):
        have, want = list(have), list(want)
    try:
        return bool(_OPS[op](have, want))
    except TypeError:  # "adam" > 0.1, None < 1: no order, so no match
        return False


def descending(key: str) -> bool:
    """Accuracies, throughput and the date sort best (newest) first; everything else, losses
    and times included, ascending."""
    key = ALIASES.get(key, key)
    return key.endswith("acc") or key in ("date", "images_per_second")


def sort_rows(rows: list[RunRow], key: str = "date", reverse: bool = False) -> list[RunRow]:
    """Sorted by `key` (see descending; `reverse` flips it); runs without a value go last."""
    check_key(key, rows, f"--sort {key}")
    present = [r for r in rows if r.get(key) is not None]
    absent = [r for r in rows if r.get(key) is None]
    down = descending(key) != reverse
    # name breaks ties so equal values keep a stable, readable order
    present.sort(key=lambda r: r.name, reverse=down)
    present.sort(key=lambda r: _order(r.get(key)), reverse=down)
    return present + absent


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before strings before anything else, so a mixed column still sorts."""
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


# ---------------------------------------------------------------- comparing and plotting


def resolve_run(arg: str | Path, root: str | Path = DEFAULT_RUN_DIR) -> Path:
    """A RUN argument: a run directory's path, or its name under `root`."""
    path = Path(arg)
    if not (path / "config.yaml").is_file() and (Path(root) / path / "config.yaml").is_file():
        return Path(root) / path
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{arg}: not a run directory (no config.yaml)")
    return path


@dataclass(frozen=True)
class Comparison:
    names: list[str]  # a column header per run
    config: list[tuple[str, list[Any]]]  # (dotted key, value per run), only keys that differ
    summary: list[tuple[str, list[Any]]]  # (summary key, value per run), COMPARED


def compare(rows: list[RunRow]) -> Comparison:

    names = [r.path.name for r in rows]
    if len(set(names)) < len(names):  # sweep trials share names across sweeps
        names = [str(r.path) for r in rows]
    keys = differing_keys([r.config for r in rows])
    return Comparison(
        names=names,
        config=[(k, [r.config.get(k) for r in rows]) for k in keys],
        summary=[(k, [r.summary.get(k) for r in rows]) for k in COMPARED],
    )


def plot_metrics(metric: str, available: Iterable[str]) -> list[str]:
    """`loss` / `acc` -> train and val of it; another name -> itself, if some run logged it."""
    available = list(dict.fromkeys(available))
    pair = [f"train_{metric}", f"val_{metric}"]
    if metric in ("loss", "acc") and any(m in available for m in pair):
        return pair
    if metric in available:
        return [metric]
    choices = [m for m in ("loss", "acc") if f"val_{m}" in available] + available
    raise ConfigError(
        f"--metric {metric}: not in these runs' metrics.jsonl"
        f"{did_you_mean(metric, choices)} (available: {', '.join(choices)})"
    )


def plot_runs(paths: list[Path], metric: str, log: bool = False):
    """A matplotlib Figure of `metric` per epoch for each run (see plot_metrics)."""
    from cnnlab.track.curves import plot_curves
    from cnnlab.track.registry import load_run

    runs = [load_run(p) for p in paths]
    available = [k for r in runs for m in r.metrics for k in m if k not in ("epoch", "step")]
    return plot_curves(runs, plot_metrics(metric, available), log=log)


# ---------------------------------------------------------------- exporting


def export_frame(rows: list[RunRow], epochs: bool = False):
    """A pandas DataFrame: one row per run (name, path, date, summary scalars, dotted config
    keys), or with `epochs` one row per run and epoch (run, path, then metrics.jsonl's keys).
    Lists and dicts become JSON strings so CSV and Parquet store them alike."""
    import pandas as pd

    records: list[dict[str, Any]] = []
    for row in rows:
        if epochs:
            from cnnlab.track.registry import load_run

            for m in load_run(row.path).metrics:
                records.append({"run": row.name, "path": str(row.path), **m})
        else:
            records.append(
                {
                    "name": row.name,
                    "path": str(row.path),
                    "date": row.date,
                    **row.summary,
                    **row.config,
                }
            )
    records = [{k: _cell(v) for k, v in r.items()} for r in records]
    frame = pd.DataFrame.from_records(records)
    for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
        kinds = {_kind(v) for v in frame[column] if v is not None and v == v}
        if len(kinds) > 1:  # Parquet wants one type per column: "auto" and 32 -> strings
            frame[column] = frame[column].map(lambda v: v if v is None else str(v))
    return frame


def _kind(value: Any) -> str:
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else str(type(value))
    )


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return value


def write_frame(frame, path: str | Path, fmt: str | None = None) -> Path:
    """Write a DataFrame as CSV or Parquet (`fmt`, else from the suffix), atomically."""
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix == ".parquet" else "csv")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--format parquet needs pyarrow: pip install pyarrow") from None
    elif fmt != "csv":
        raise ConfigError(f"--format {fmt}: expected csv or parquet")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return path
