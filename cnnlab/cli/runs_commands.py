"""Commands over many run directories: report, runs list/compare/plot/export."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.report import write_report

    path = write_report(args.targets, Path(args.output) if args.output else None)
    print(f"report: {path}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cnnlab.track import runs

    rows = runs.index_runs(args.root)
    total = len(rows)
    rows = runs.sort_rows(runs.filter_rows(rows, args.filter), args.sort, args.reverse)
    shown = rows if args.limit is None else rows[: max(0, args.limit)]
    console = Console()
    if not console.is_terminal:  # piped into grep or a file: whole lines, never folded cells
        console = Console(width=250)
    if not shown:
        why = "match the filters" if total else "yet (cnnlab train writes them)"
        console.print(f"no runs in {args.root} {why}", highlight=False, markup=False)
        return 0
    table = Table(box=None, pad_edge=False, collapse_padding=True)
    table.add_column("name", overflow="fold")
    for header in ("date", "data", "model", "optim", "lr"):
        table.add_column(header)
    for header in ("epochs", "best val", "test", "time"):
        table.add_column(header, justify="right")
    table.add_column("status")
    colours = {"completed": "green", "running": "yellow", "diverged": "red", "failed": "red"}
    for row in shown:
        epochs = _cell(row.get("epochs_run"))
        if row.get("train.epochs") is not None:
            epochs += f"/{row.get('train.epochs')}"
        status = str(row.get("status"))
        table.add_row(
            Text(row.name),
            Text(row.date[:16]),  # seconds add width, not information
            Text(_cell(row.get("data.name"))),
            Text(_model_cell(row.get("model.name"), row.get("model.backbone"))),
            Text(_cell(row.get("optim.name"))),
            Text(_cell(row.get("optim.lr"))),
            Text(epochs),
            Text(_cell(row.get("best_val_acc"), "{:.2%}")),
            Text(_cell(row.get("test_acc"), "{:.2%}")),
            Text(_duration(row.get("train_seconds"))),
            Text(status, style=colours.get(status, "")),
        )
    console.print(table)
    console.print(
        f"{len(shown)} of {total} runs in {args.root}", style="dim", highlight=False, markup=False
    )
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cnnlab.track import runs

    rows = [runs.read_row(runs.resolve_run(r, args.root)) for r in args.runs]
    result = runs.compare(rows)
    table = Table(box=None, pad_edge=False)
    table.add_column("key", style="bold")
    for name in result.names:
        table.add_column(name, overflow="fold")
    for key, values in result.config:
        table.add_row(Text(key), *[Text(_cell(v)) for v in values])
    if not result.config:
        table.add_row(Text("(configs identical)"), *["" for _ in result.names])
    table.add_section()
    for key, values in result.summary:
        style = "{:.2%}" if key.endswith("acc") else None
        cells = [_duration(v) if key == "train_seconds" else _cell(v, style) for v in values]
        table.add_row(Text(key), *[Text(c) for c in cells])
    Console().print(table)
    return 0


def cmd_runs_plot(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    paths = [runs.resolve_run(r, args.root) for r in args.runs]
    figure = runs.plot_runs(paths, args.metric, log=args.log)
    from cnnlab.track.curves import save_png

    print(f"curves: {save_png(figure, args.output)}")
    return 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    output = args.output or f"{'epochs' if args.epochs else 'runs'}.{args.format or 'csv'}"
    rows = runs.filter_rows(runs.index_runs(args.root), args.filter)
    frame = runs.export_frame(rows, epochs=args.epochs)
    path = runs.write_frame(frame, output, args.format)
    print(f"{len(frame)} rows: {path}")
    return 0


def _model_cell(name: object, backbone: object) -> str:
    """A transfer run is its backbone ("from digits-cnn"), not the unused model.name."""
    if not backbone:
        return _cell(name)
    from cnnlab.config.names import backbone_label

    return f"from {backbone_label(str(backbone))}"


def _cell(value, fmt: str | None = None) -> str:
    if value is None:
        return "-"
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
