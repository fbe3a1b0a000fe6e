"""Run tables as files: one row per run (or per run and epoch), as CSV or Parquet.

CSV is written row by row as the rows are made; Parquet through a pandas DataFrame, since a
column's type must be known before it is written. Used by `cnnlab runs export` via
cnnlab.track.runs, which re-exports these.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.atomic import atomic_path
from cnnlab.errors import ConfigError
from cnnlab.track.registry import Run, read_metrics


def export_rows(rows: list[Run], epochs: bool = False) -> tuple[list[str], Iterator[dict]]:
    """(columns, records): one record per run (name, path, date, summary scalars, dotted config
    keys), or with `epochs` one per run and epoch (run, path, then metrics.jsonl's keys). The
    records are made as they are consumed; with `epochs` each metrics.jsonl is read twice (once
    for the columns), so no more than one run's epochs are in memory at a time."""
    if epochs:
        keys: dict[str, None] = {"run": None, "path": None}
        for row in rows:
            for m in _epochs(row):
                keys |= dict.fromkeys(m)
        records = (
            {"run": row.name, "path": str(row.path), **m} for row in rows for m in _epochs(row)
        )
        return list(keys), records
    scalars: dict[str, None] = {}
    config: dict[str, None] = {}
    for row in rows:
        scalars |= dict.fromkeys(row.scalars)
        config |= dict.fromkeys(row.flat_config)
    columns = list(dict.fromkeys(["name", "path", "date", *scalars, *config]))
    records = (
        {"name": r.name, "path": str(r.path), "date": r.date, **r.scalars, **r.flat_config}
        for r in rows
    )
    return columns, records


def _epochs(row: Run) -> list[dict[str, Any]]:
    # a last line without its newline is the one a running trainer is appending: not an error
    return read_metrics(row.path / "metrics.jsonl", partial_ok=True)


def export_frame(rows: list[Run], epochs: bool = False):
    """export_rows as a pandas DataFrame. Lists and dicts become JSON strings so CSV and Parquet
    store them alike; a column of integers stays integer where some runs lack it (Int64)."""
    import pandas as pd

    columns, records = export_rows(rows, epochs)
    records = [{k: _cell(v) for k, v in r.items()} for r in records]
    kinds: dict[str, set[str]] = {c: set() for c in columns}
    for record in records:
        for key, value in record.items():
            if value is not None and value == value:  # not missing, not NaN
                kinds[key].add(_kind(value))
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column, seen in kinds.items():
        if len({"number" if k in ("int", "float") else k for k in seen}) > 1:
            # Parquet wants one type per column: "auto" and 32 -> strings
            frame[column] = frame[column].map(lambda v: v if v is None else str(v))
        elif seen == {"int"} and frame[column].isna().any():
            # pandas made it float because some runs lack it (2 -> 2.0): keep it integer
            frame[column] = frame[column].astype("Int64")
    return frame


def _kind(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "int" if isinstance(value, int) else "float"
    return type(value).__name__


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return value


def check_output(path: str | Path, option: str = "-o") -> Path:
    """A file a command is about to write: ConfigError, one line, if it is a directory, its
    folder does not exist (it is not created: a typo would scatter files) or cannot be written."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise ConfigError(f"{option} {path}: the folder {parent} {why}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path}: cannot write there (permission denied or read-only)")
    return path


def write_export(rows: list[Run], path: str | Path, fmt: str | None = None, epochs=False) -> int:
    """Write export_rows to `path` as CSV (streamed, row by row) or Parquet (via a DataFrame:
    a column's type must be known before it is written), atomically; returns the row count."""
    path = check_output(path)
    fmt = _format(path, fmt)
    try:
        if fmt == "parquet":
            frame = export_frame(rows, epochs)
            write_frame(frame, path, fmt)
            return len(frame)
        columns, records = export_rows(rows, epochs)
        count = 0
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            for record in records:
                writer.writerow({k: _cell(v) for k, v in record.items()})
                count += 1
        return count
    except OSError as e:
        raise ConfigError(f"-o {path}: cannot write it ({e.strerror})") from None


def _format(path: Path, fmt: str | None) -> str:
    fmt = fmt or ("parquet" if path.suffix == ".parquet" else "csv")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--format parquet needs pyarrow: pip install cnnlab[parquet]"
                " (or pip install pyarrow)"
            ) from None
    elif fmt != "csv":
        raise ConfigError(f"--format {fmt}: expected csv or parquet")
    return fmt


def write_frame(frame, path: str | Path, fmt: str | None = None) -> Path:
    """Write a DataFrame as CSV or Parquet (`fmt`, else from the suffix), atomically."""
    path = Path(path)
    fmt = _format(path, fmt)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return path
