"""Many run directories at once: filter, sort, compare, plot and export them.

`cnnlab runs` formats what these functions return; the report reuses them. The runs come from
the cached index of cnnlab.track.runindex (index_runs, read_row), re-exported here with the
writers of cnnlab.track.export, as Run objects (cnnlab.track.registry) whose table views
(flat_config, scalars, get) they use.
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

from cnnlab.config.defaults import RUN_DIR
from cnnlab.config.safe_yaml import load_yaml, quote
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.registry import did_you_mean
from cnnlab.track.curves import differing_keys
from cnnlab.track.export import check_output, export_frame, export_rows, write_export, write_frame
from cnnlab.track.groups import group_by_experiment, stats
from cnnlab.track.registry import Run
from cnnlab.track.runindex import (
    ALIASES,
    INDEX_NAME,
    INDEX_VERSION,
    ROW_KEYS,
    WATCHED,
    find_run_dirs,
    gc_paused,
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
    "Run",
    "check_key",
    "check_output",
    "compare",
    "descending",
    "export_frame",
    "export_rows",
    "filter_rows",
    "find_run_dirs",
    "gc_paused",
    "group_label",
    "index_runs",
    "known_keys",
    "parse_filter",
    "plot_metrics",
    "plot_runs",
    "read_row",
    "resolve_run",
    "sort_groups",
    "sort_rows",
    "write_export",
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


def known_keys(rows: Iterable[Run]) -> list[str]:
    """Every key a filter or sort may name: row fields, table aliases, summary keys and the
    dotted config keys of the schema and of the runs (old runs may have keys no longer in it)."""
    from cnnlab.config.schema import valid_keys

    keys = dict.fromkeys([*ROW_KEYS, *ALIASES, *SUMMARY_KEYS, *valid_keys()])
    for row in rows:
        keys |= dict.fromkeys(row.scalars)
        keys |= dict.fromkeys(row.flat_config)
    return list(keys)


def check_key(key: str, rows: list[Run], option: str) -> None:
    """ConfigError naming the key (and a close match) unless some run or the schema has it."""
    key = ALIASES.get(key, key)
    if key in ROW_KEYS or any(key in r.scalars or key in r.flat_config for r in rows):
        return
    keys = known_keys(rows)
    if key not in keys:
        raise ConfigError(f"{option}: unknown key {key}{did_you_mean(key, keys)}")


def parse_filter(text: str) -> tuple[str, str, Any]:
    """'optim.lr=0.1' -> ('optim.lr', '=', 0.1): the value is parsed as YAML, as overrides are."""
    match = _FILTER.match(text.strip())
    if not match:
        raise ConfigError(f"--filter {quote(text)}: expected KEY=VALUE (or !=, >, >=, <, <=)")
    key, op, raw = match.groups()
    try:
        value = load_yaml(raw, f"--filter {quote(text)}") if raw.strip() else None
    except yaml.YAMLError:
        value = raw.strip()
    return key, op, value


def filter_rows(rows: list[Run], filters: Iterable[str]) -> list[Run]:
    """The runs that match every filter; a run without the key never matches."""
    for text in filters:
        key, op, value = parse_filter(text)
        check_key(key, rows, f"--filter {quote(text)}")
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


def sort_rows(rows: list[Run], key: str = "date", reverse: bool = False) -> list[Run]:
    """Sorted by `key` (see descending; `reverse` flips it); runs without a value go last."""
    check_key(key, rows, f"--sort {key}")
    return _sorted([(r.get(key), r.name, r) for r in rows], key, reverse)


def sort_groups(groups: list[list[Run]], key: str = "date", reverse: bool = False):
    """Groups of runs (see compare) sorted as sort_rows sorts runs, by the mean of `key` over
    each group's runs (by its first run's value where `key` is not a number)."""
    check_key(key, [r for g in groups for r in g], f"--sort {key}")
    items = []
    for group in groups:
        values = [r.get(key) for r in group]
        mean = stats(values)
        items.append((mean.mean if mean else values[0], group[0].name, group))
    return _sorted(items, key, reverse)


def _sorted(items: list[tuple[Any, str, Any]], key: str, reverse: bool) -> list:
    """(value, name, item) sorted by value, then name; None values last."""
    present = [i for i in items if i[0] is not None]
    absent = [i[2] for i in items if i[0] is None]
    down = descending(key) != reverse
    # name breaks ties so equal values keep a stable, readable order
    present.sort(key=lambda i: i[1], reverse=down)
    present.sort(key=lambda i: _order(i[0]), reverse=down)
    return [i[2] for i in present] + absent


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before strings before anything else, so a mixed column still sorts."""
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


# ---------------------------------------------------------------- comparing and plotting


def resolve_run(arg: str | Path, root: str | Path = RUN_DIR) -> Path:
    """A RUN argument: a run directory's path, or its name under `root`."""
    path = Path(arg)
    if not (path / "config.yaml").is_file() and (Path(root) / path / "config.yaml").is_file():
        return Path(root) / path
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{arg}: not a run directory (no config.yaml)")
    return path


@dataclass(frozen=True)
class Comparison:
    names: list[str]  # a column header per run, or per group of seeds
    config: list[tuple[str, list[Any]]]  # (dotted key, value per column), only keys that differ
    summary: list[tuple[str, list[Any]]]  # (summary key, value per column: a group's are Stats)
    sizes: list[int]  # runs per column


def compare(rows: list[Run], group: bool = True) -> Comparison:
    """The config keys that differ and the COMPARED results, a column per run. With `group`,
    runs of one experiment (configs equal apart from NOT_THE_EXPERIMENT: the seed and names)
    share a column whose numbers are Stats (mean ± std), its train.seed the list of seeds."""
    columns = group_by_experiment(rows, _flat) if group else [[r] for r in rows]
    names = [group_label(c) if len(c) > 1 else c[0].path.name for c in columns]
    if len(set(names)) < len(names):  # sweep trials share names across sweeps
        names = [group_label(c) if len(c) > 1 else str(c[0].path) for c in columns]
    firsts = [_flat(c[0]) for c in columns]
    config = [(k, [f.get(k) for f in firsts]) for k in differing_keys(firsts)]
    if any(len(c) > 1 for c in columns):
        seeds = [[r.flat_config.get("train.seed") for r in c] for c in columns]
        config.append(("train.seed", [s if len(s) > 1 else s[0] for s in seeds]))
    summary = [(k, [_column_value(c, k) for c in columns]) for k in COMPARED]
    return Comparison(names, config, summary, [len(c) for c in columns])


def _flat(run: Run) -> dict[str, Any]:
    return dict(run.flat_config)


def _column_value(runs: list[Run], key: str) -> Any:
    values = [r.get(key) for r in runs]
    if len(runs) == 1:
        return values[0]
    if key == "status":
        counts = {v: values.count(v) for v in values}
        return ", ".join(f"{v} ×{n}" if n > 1 else str(v) for v, n in counts.items())
    return stats(values)


def group_label(runs: list[Run]) -> str:
    """A group's name: its folder (`cnnlab train --seeds` writes one with group.json), else
    its first run's name; tables add the number of runs."""
    parents = {r.path.parent for r in runs}
    if len(parents) == 1:
        parent = parents.pop()
        if (parent / "group.json").is_file():
            return parent.name
    return runs[0].path.name


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
