"""Commands over many run directories: report, runs list/compare/plot/export.

Tables go to a terminal through rich (colours, at most LIST_LIMIT rows of `runs list` unless
--limit says otherwise); piped into a file or grep they are plain text, every row, one line per
row, never wrapped or folded, and rich is not even imported (at 10,000 runs, building its
renderables was ~87% of a listing's time).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

LIST_LIMIT = 50  # rows `runs list` shows on a terminal without --limit; piped output shows all
LIST_HEADERS = (
    "name",
    "date",
    "data",
    "model",
    "optim",
    "lr",
    "epochs",
    "best val",
    "test",
    "time",
    "status",
)
LIST_RIGHT = frozenset({6, 7, 8, 9})  # right-justified columns: the numbers
COLOURS = {"completed": "green", "running": "yellow", "diverged": "red", "failed": "red"}
COLOURS |= {"killed": "red", "unreadable": "red", "pruned": "blue"}


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.errors import ConfigError
    from cnnlab.report import write_report
    from cnnlab.track.runs import check_output

    output = check_output(args.output) if args.output else None
    try:
        path = write_report(args.targets, output)
    except OSError as e:
        raise ConfigError(f"report: {e.filename or Path()}: {e.strerror}") from None
    print(f"report: {path}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    if args.limit is not None and args.limit < 0:
        from cnnlab.errors import ConfigError

        raise ConfigError(f"--limit {args.limit}: expected 0 (all) or a positive number of rows")
    for text in args.filter:  # a malformed filter fails before the index is built or touched
        runs.parse_filter(text)
    rows = runs.index_runs(args.root)
    with runs.gc_paused():  # rows and cells by the ten thousand, no cycles
        _list_rows(args, rows)
    return 0


def _list_rows(args: argparse.Namespace, rows: list) -> None:
    """`runs list`'s table of the indexed runs: filtered, sorted or grouped, paged."""
    from cnnlab.track import runs
    from cnnlab.track.groups import group_by_experiment

    total = len(rows)
    rows = runs.filter_rows(rows, args.filter)
    if args.group:  # each group sorted, then the groups by their mean
        groups = group_by_experiment(rows, lambda r: r.flat_config)
        groups = [runs.sort_rows(g, args.sort, args.reverse) for g in groups]
        items = runs.sort_groups(groups, args.sort, args.reverse)
    else:
        items = [[r] for r in runs.sort_rows(rows, args.sort, args.reverse)]
    terminal = sys.stdout.isatty()
    limit = args.limit if args.limit is not None else LIST_LIMIT if terminal else 0
    shown = items[:limit] if limit else items
    if not shown:
        why = "match the filters" if total else "yet (cnnlab train writes them)"
        return _emit(f"no runs in {args.root} {why}\n")
    count = sum(len(item) for item in shown)
    footer = f"{count} of {total} runs in {args.root}"
    if args.group:
        footer += f", in {len(shown)} rows"
    if len(shown) < len(items):
        left = len(items) - len(shown)
        footer += f"; {left} more row{'s' if left > 1 else ''} not shown (--limit 0 shows all)"
    status = len(LIST_HEADERS) - 1
    cells = [_list_cells(item) for item in shown]
    _print_table(
        LIST_HEADERS, cells, LIST_RIGHT, lambda i, c: COLOURS.get(c) if i == status else None
    )
    _print_footer(footer)


def _list_cells(runs: list) -> list[str]:
    """One row of `runs list`: a run, or a group of seeds (mean ± std, its size in the name)."""
    first = runs[0]
    # Run.get without its aliases, on the two views: this runs 10,000 times a listing. Config
    # keys are dotted, summary keys never: asking the other view for a key it lacks would read
    # a killed run's whole config from the index, every listing.
    scalar, config = first.scalars.get, first.flat_config.get
    epochs = _spread([r.get("epochs_run") for r in runs]) if len(runs) > 1 else None
    epochs = epochs or _cell(scalar("epochs_run"))
    planned = config("train.epochs")
    if planned is not None:
        epochs += f"/{planned}"
    if len(runs) == 1:
        name = first.name
        best, test = _percent(scalar("best_val_acc")), _percent(scalar("test_acc"))
        seconds = scalar("train_seconds")
    else:
        from cnnlab.track.groups import stats
        from cnnlab.track.runs import group_label

        name = f"{group_label(runs)} ({len(runs)} runs)"
        best, test = (_stats(stats([r.get(k) for r in runs])) for k in ("best_val_acc", "test_acc"))
        time = stats([r.get("train_seconds") for r in runs])
        seconds = None if time is None else time.mean
    backbone = config("model.backbone")
    return [
        name,
        first.date[:16],  # seconds add width, not information
        _cell(config("data.name")),
        _model_cell(backbone) if backbone else _cell(config("model.name")),
        _cell(config("optim.name")),
        _cell(config("optim.lr")),
        epochs,
        best,
        test,
        _duration(seconds),
        _statuses(runs),
    ]


def _stats(value) -> str:
    return "-" if value is None else value.format(percent=True, n=False).replace(" %", "%")


def _spread(values: list) -> str:
    """'12', or '10-12' when a group's runs differ."""
    numbers = [v for v in values if isinstance(v, int | float)]
    if not numbers:
        return "-"
    low, high = _cell(min(numbers)), _cell(max(numbers))
    return low if low == high else f"{low}-{high}"


def _statuses(runs: list) -> str:
    """'completed', 'running (on gpu7)' for another host's writer, 'completed ×2, killed'."""
    words = [_status(run) for run in runs]
    counts = {w: words.count(w) for w in words}
    return ", ".join(f"{w} ×{n}" if n > 1 else w for w, n in counts.items())


def _status(run) -> str:
    status = run.status
    if status != "running":
        return status
    writer = run.writer
    return f"{status} (on {writer.host})" if writer and not writer.here else status


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from cnnlab.track import runs
    from cnnlab.track.groups import Stats

    rows = [runs.read_row(runs.resolve_run(r, args.root)) for r in args.runs]
    result = runs.compare(rows, group=not args.each)
    headers = ["key"] + [
        f"{name} (n={size})" if size > 1 else name
        for name, size in zip(result.names, result.sizes, strict=True)
    ]
    table = [[key, *[_cell(v) for v in values]] for key, values in result.config]
    if not result.config:
        table.append(["(configs identical)", *["" for _ in result.names]])
    table.append(None)  # a rule between the config and the results
    for key, values in result.summary:
        cells = []
        for v in values:
            if isinstance(v, Stats):
                cells.append(_stats_cell(key, v))
            elif key == "train_seconds":
                cells.append(_duration(v))
            else:
                cells.append(_percent(v) if key.endswith("acc") else _cell(v))
        table.append([key, *cells])
    _print_table(headers, table, frozenset(), lambda i, c: "bold" if i == 0 else None)
    return 0


def _stats_cell(key: str, value) -> str:
    if key.endswith("acc"):
        return value.format(percent=True, n=False).replace(" %", "%")
    if key == "train_seconds":
        spread = "" if value.std is None else f" ± {_duration(value.std)}"
        return _duration(value.mean) + spread
    return value.format(digits=1, n=False)


def cmd_runs_plot(args: argparse.Namespace) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.track import runs
    from cnnlab.track.curves import save_png

    output = runs.check_output(args.output)
    paths = [runs.resolve_run(r, args.root) for r in args.runs]
    figure = runs.plot_runs(paths, args.metric, log=args.log)
    try:
        print(f"curves: {save_png(figure, output)}")
    except OSError as e:
        raise ConfigError(f"-o {output}: cannot write it ({e.strerror})") from None
    return 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    if args.mlflow is not None:
        return _export_mlflow(args)
    output = args.output or f"{'epochs' if args.epochs else 'runs'}.{args.format or 'csv'}"
    for text in args.filter:  # a malformed filter fails before the index is built or touched
        runs.parse_filter(text)
    rows = runs.filter_rows(runs.index_runs(args.root), args.filter)
    count = runs.write_export(rows, output, args.format, epochs=args.epochs)
    print(f"{count} rows: {output}")
    return 0


def _export_mlflow(args: argparse.Namespace) -> int:
    """runs export --mlflow URI: each run under --root that MLflow does not hold yet, uploaded as
    training with track.mlflow would have logged it."""
    from cnnlab.errors import ConfigError
    from cnnlab.track import runs
    from cnnlab.track.mlflow import MlflowTracker

    table = [f for f, given in (("-o", args.output), ("--format", args.format)) if given]
    if args.epochs or table:
        raise ConfigError(
            f"--mlflow uploads runs to MLflow; {(table or ['--epochs'])[0]} is for a table file "
            "(run the export twice for both)"
        )
    rows = runs.filter_rows(runs.index_runs(args.root), args.filter)
    tracker = MlflowTracker(args.mlflow, strict=True, option="--mlflow")
    there = tracker.uploaded()
    uploaded, already, unfinished = 0, 0, 0
    for row in rows:
        if row.status in ("running", "unreadable"):
            unfinished += 1
        elif str(row.path.resolve()) in there:
            already += 1
        else:
            _emit(f"{row.name}: MLflow run {tracker.log_finished(row)}\n")
            uploaded += 1
    notes = [f"{already} already there"] if already else []
    notes += [f"{unfinished} running or unreadable, not uploaded"] if unfinished else []
    _emit(
        f"{uploaded} run{'' if uploaded == 1 else 's'} uploaded to {args.mlflow} (experiment "
        f"{tracker.experiment_name}){'; ' if notes else ''}{'; '.join(notes)}\n"
    )
    return 0


# ---------------------------------------------------------------- printing


def _print_table(
    headers: Sequence[str],
    rows: list[list[str] | None],
    right: frozenset[int],
    style: Callable[[int, str], str | None],
) -> None:
    """rows of cells (None: a rule between sections): a rich table on a terminal, plain
    aligned text otherwise. `style(column, cell)` colours a cell on the terminal."""
    if not sys.stdout.isatty():
        body = [r for r in rows if r is not None]
        widths = [max(map(len, column)) for column in zip(headers, *body, strict=True)]
        # one format string for every row: 10,000 rows in ~20 ms instead of ~90 (cell by cell)
        line = "  ".join(
            f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths)
        ).format
        text = "\n".join(line(*row).rstrip() for row in [headers, *body])
        return _emit(text + "\n")
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, collapse_padding=True)
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        if row is None:
            table.add_section()
        else:
            table.add_row(*[Text(c, style=style(i, c) or "") for i, c in enumerate(row)])
    Console().print(table)


def _print_footer(text: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(text, style="dim", highlight=False, markup=False)
    else:
        _emit(text + "\n")


def _emit(text: str) -> None:
    """Write to stdout; a reader that stopped early (`| head`) ends the output quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the flush at exit again: point stdout at /dev/null instead
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _model_cell(backbone: object) -> str:
    """A transfer run is its backbone ("from digits-cnn"), not the unused model.name."""
    from cnnlab.config.names import backbone_label

    return f"from {backbone_label(str(backbone))}"


def _percent(value: Any) -> str:
    """0.9162 -> '91.62%'; '-' where there is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2%}"
    return _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
