"""`cnnlab report`: one self-contained static HTML page for a run, or comparing several.

Everything is inline (CSS in a <style>, charts as base64 PNG data URIs, no JavaScript), so the
file can be mailed, attached to an issue or opened offline and looks the same everywhere.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_text_atomic
from cnnlab.config.load import flatten
from cnnlab.config.names import run_started
from cnnlab.errors import ConfigError
from cnnlab.track.console import summary_rows
from cnnlab.track.curves import differing_keys, plot_curves, png_bytes
from cnnlab.track.registry import Run, load_run
from cnnlab.track.rundir import (
    CONFUSION_CSV,
    CONFUSION_PNG,
    REPORT_NAME,
    ROBUSTNESS_CSV,
    ROBUSTNESS_PNG,
)
from cnnlab.track.runindex import find_run_dirs

CURVES = (("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"]))

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }
th { background: #f3f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td.num { text-align: left; }
tr.best td { background: #e6f4ea; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem; }
.charts figure { margin: 0; } .charts img, img.wide { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; text-align: center; }
pre { background: #f8f8f8; border: 1px solid #e3e3e3; padding: .6rem; overflow-x: auto;
      font-size: .82rem; }
details { border: 1px solid #ddd; border-radius: 6px; padding: .3rem 1rem; margin: 1rem 0; }
summary { cursor: pointer; font-weight: 600; font-size: 1.1rem; }
.finding b { color: #a33; } .ok { color: #2a7; }
"""


def write_report(targets: list[str | Path], output: Path | None = None) -> Path:
    """Write the report of the runs in `targets` (run directories, or folders of runs such as
    a sweep) to `output` (default: <run>/report.html for one run, else ./report.html)."""
    runs = collect_runs(targets)
    if output is None:
        output = runs[0].path / REPORT_NAME if len(runs) == 1 else Path(REPORT_NAME)
    output = Path(output)
    write_text_atomic(output, render(runs))
    return output


def collect_runs(targets: list[str | Path]) -> list[Run]:
    if not targets:
        raise ConfigError("report: give a run directory or a folder of runs")
    paths: list[Path] = []
    for target in map(Path, targets):
        if (target / "config.yaml").is_file():
            paths.append(target)
        elif target.is_dir():
            found = find_run_dirs(target)
            if not found:
                raise ConfigError(f"{target}: no run directories in it (no */config.yaml)")
            paths += found
        else:
            raise ConfigError(f"{target}: not a run directory or a folder of runs")
    unique = {p.resolve(): p for p in paths}  # a run named twice (dir and its sweep) shows once
    return [load_run(p) for p in unique.values()]


def render(runs: list[Run]) -> str:
    if len(runs) == 1:
        title, heading = runs[0].path.name, "cnnlab report"
        body = f"<h2>{esc(title)}</h2>{run_section(runs[0], 0)}"
    else:
        title = heading = f"cnnlab report: {len(runs)} runs"
        opened = " open" if len(runs) <= 4 else ""  # a big sweep: the table first, then unfold
        sections = "".join(
            f"<details{opened}><summary>{esc(r.path.name)} · {esc(status(r))} · best val acc "
            f"{pct(r.summary.get('best_val_acc'))}</summary>{run_section(r, i)}</details>"
            for i, r in enumerate(runs)
        )
        body = f"<h2>Comparison</h2>{comparison(runs)}<h2>Runs</h2>{sections}"
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cnnlab report: {esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(heading)}</h1><p class=meta>generated {generated}</p>"
        f"{body}</body></html>\n"
    )


def run_section(run: Run, index: int) -> str:
    s = run.summary
    parts = [
        f'<section id="run-{index}">',
        f"<p class=meta>status <b>{esc(status(run))}</b> · started "
        f"{_started(run.path)} · {esc(run.path)}</p>",
        table([[k, v] for k, v in key_numbers(s)], header=False, css_class="kv"),
        "<h4>Diagnosis</h4>",
        diagnosis(s.get("diagnosis") or []),
        "<h4>Curves</h4>",
        charts(run),
    ]
    parts += extra_results(run.path)
    for title, name in (("Model", "model.txt"), ("Config (resolved)", "config.yaml")):
        if (run.path / name).is_file():
            parts.append(f"<h4>{title}</h4><pre>{esc((run.path / name).read_text())}</pre>")
    return "".join(parts) + "</section>"


def key_numbers(s: dict[str, Any]) -> list[tuple[str, str]]:
    versions = s.get("versions") or {}
    return [
        *summary_rows(s),
        ("versions", " ".join(f"{k} {v}" for k, v in versions.items()) or "-"),
    ]


def diagnosis(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "<p class=ok>no findings</p>"
    items = []
    for f in findings:
        extra = {k: v for k, v in f.items() if k not in ("kind", "message", "advice")}
        details = f" <small>({esc(', '.join(f'{k} {v}' for k, v in extra.items()))})</small>"
        advice = f"<br><i>{esc(f['advice'])}</i>" if f.get("advice") else ""
        items.append(
            f"<li class=finding><b>{esc(f.get('kind', '?'))}</b>: {esc(f.get('message', ''))}"
            f"{details if extra else ''}{advice}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def charts(run: Run) -> str:
    if not run.metrics:
        return "<p>no epochs finished yet</p>"
    figures = []
    for name, metrics in CURVES:
        for log in (False, True):
            caption = f"{name} ({'log' if log else 'linear'} scale)"
            figures.append(figure(png_bytes(plot_curves([run], metrics, log=log)), caption))
    return f"<div class=charts>{''.join(figures)}</div>"


def extra_results(path: Path) -> list[str]:
    """Confusion matrix and robustness results, each as a table and/or an image if present."""
    parts = []
    for title, csv_name, png_name in (
        ("Confusion matrix", CONFUSION_CSV, CONFUSION_PNG),
        ("Robustness", ROBUSTNESS_CSV, ROBUSTNESS_PNG),
    ):
        found = []
        if (path / csv_name).is_file():
            rows = list(csv.reader(io.StringIO((path / csv_name).read_text())))
            found.append(table(rows, header=True) if rows else "<p>(empty)</p>")
        if (path / png_name).is_file():
            found.append(image((path / png_name).read_bytes(), title, css_class="wide"))
        if found:
            parts.append(f"<h4>{title}</h4>{''.join(found)}")
    return parts


def _clipped(value: str, limit: int = 40) -> str:
    if len(value) <= limit:
        return esc(value)
    return f'<span title="{esc(value)}">{esc(value[: limit - 1])}…</span>'


def comparison(runs: list[Run]) -> str:
    keys = differing_keys([r.config for r in runs])
    accs = [r.summary.get("best_val_acc") for r in runs]
    best = max((a for a in accs if a is not None), default=None)
    numbers = ["best val acc", "final val acc", "test acc", "epochs", "train time"]
    # Results before the differing keys: a long value (a model.layers list) must not push them
    # off the page; long values are cut, with the whole value in the cell's tooltip.
    head = ["run", *numbers, "status", *keys]
    rows = []
    for i, (run, acc) in enumerate(zip(runs, accs, strict=True)):
        flat, shown = flatten(run.config), dict(key_numbers(run.summary))
        cells = [f'<a href="#run-{i}">{esc(run.path.name)}</a>']
        cells += [esc(x) for x in [*map(shown.get, numbers), status(run)]]
        cells += [_clipped(str(flat.get(k, "-"))) for k in keys]
        mark = " class=best" if best is not None and acc == best else ""
        rows.append(f"<tr{mark}>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    overlay = "".join(
        figure(png_bytes(plot_curves(runs, [m], log=log)), f"{m}, all runs")
        for m, log in (("val_acc", False), ("val_loss", True))
        if any(r.metrics for r in runs)
    )
    note = "<p class=meta>highlighted: the best run by best val acc</p>" if best is not None else ""
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>{note}<div class=charts>{overlay}</div>"


def table(rows: list[list[str]], header: bool, css_class: str = "") -> str:
    """Rows of plain strings (escaped here); with header=True the first row and column are
    labels, as in a confusion matrix or a robustness table."""
    html = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            is_label = (header and i == 0) or j == 0
            tag = "th" if is_label else "td"
            numeric = not is_label and _is_number(cell)
            cells.append(f"<{tag}{' class=num' if numeric else ''}>{esc(cell)}</{tag}>")
        html.append(f"<tr>{''.join(cells)}</tr>")
    cls = f" class={css_class}" if css_class else ""
    return f"<table{cls}>{''.join(html)}</table>"


def figure(png: bytes, caption: str) -> str:
    return f"<figure>{image(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def image(png: bytes, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img{cls} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _started(path: Path) -> str:
    started = run_started(path)
    return "-" if started is None else f"{started:%Y-%m-%d %H:%M}"


def status(run: Run) -> str:
    return str(run.summary.get("status", "running (no summary.json yet)"))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
