"""`cnnlab report`: one self-contained static HTML page for a run, or comparing several.

Everything is inline (CSS in a <style>, charts as base64 PNG data URIs, no JavaScript), so the
file can be mailed, attached to an issue or opened offline and looks the same everywhere. Runs
of one config that differ only by their seed (track/groups.py) are compared as one row with
mean ± std, and get a section of their own (report/seeds.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_text_atomic
from cnnlab.config.keys import flatten
from cnnlab.config.names import run_started
from cnnlab.errors import ConfigError
from cnnlab.report.compare import Row, comparison, row_labels
from cnnlab.report.parts import CSS, esc, figure, pct, status, table
from cnnlab.report.results import result_sections
from cnnlab.report.seeds import group_section
from cnnlab.report.sweep import sweep_sections
from cnnlab.track.console import summary_rows
from cnnlab.track.curves import plot_curves, png_bytes
from cnnlab.track.groups import group_by_experiment
from cnnlab.track.registry import Run, load_run
from cnnlab.track.rundir import REPORT_NAME
from cnnlab.track.runindex import find_run_dirs

# (caption, metrics, log scale): accuracies only linear, their log axis reads 9.2×10⁻¹.
CHARTS = (
    ("loss (linear scale)", ["train_loss", "val_loss"], False),
    ("loss (log scale)", ["train_loss", "val_loss"], True),
    ("accuracy", ["train_acc", "val_acc"], False),
)
# Diagnosis kinds that say what could not be judged, rather than something wrong.
NOTES = ("too_short",)


def write_report(targets: list[str | Path], output: Path | None = None) -> Path:
    """Write the report of the runs in `targets` (run directories, or folders of runs such as
    a sweep or a group of seeds) to `output` (default: <run>/report.html for one run, else
    ./report.html)."""
    runs = collect_runs(targets)
    if output is None:
        output = runs[0].path / REPORT_NAME if len(runs) == 1 else Path(REPORT_NAME)
    output = Path(output)
    write_text_atomic(output, render(runs, sweep_sections(targets)))
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


def render(runs: list[Run], extra: str = "") -> str:
    """The page; `extra`: HTML sections placed before the runs' (a sweep's, report/sweep.py)."""
    if len(runs) == 1:
        title, heading = runs[0].path.name, "cnnlab report"
        body = f"<h2>{esc(title)}</h2>{run_section(runs[0], 'run-0')}"
    else:
        title, body = several(runs)
        heading = title = f"cnnlab report: {title}"
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cnnlab report: {esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(heading)}</h1><p class=meta>generated {generated}</p>"
        f"{extra}{body}</body></html>\n"
    )


def several(runs: list[Run]) -> tuple[str, str]:
    """The title and body of a page of several runs: the comparison (a row per run or group
    of seeds), each group's section, then each run's section, folded when there are many."""
    anchors = {run.path: f"run-{i}" for i, run in enumerate(runs)}
    rows, groups = [], 0
    for members in group_by_experiment(runs, lambda r: flatten(r.config)):
        if len(members) > 1:
            rows.append(Row(members, f"group-{groups}"))
            groups += 1
        else:
            rows.append(Row(members, anchors[members[0].path]))
    body = f"<h2>Comparison</h2>{comparison(rows)}"
    if groups:
        body += "<h2>Groups of seeds</h2>" + "".join(
            group_section(row, label, anchors)
            for row, label in zip(rows, row_labels(rows), strict=True)
            if len(row.runs) > 1
        )
    opened = " open" if len(runs) <= 4 else ""  # a big sweep: the table first, then unfold
    body += "<h2>Runs</h2>" + "".join(
        f"<details{opened}><summary>{esc(r.path.name)} · {esc(status(r))} · best val acc "
        f"{pct(r.summary.get('best_val_acc'))}</summary>{run_section(r, anchors[r.path])}</details>"
        for r in runs
    )
    title = f"{len(runs)} runs"
    if groups:
        title += f", {groups} group{'s' if groups > 1 else ''} of seeds"
    return title, body


def run_section(run: Run, anchor: str) -> str:
    s = run.summary
    parts = [
        f'<section id="{anchor}">',
        f"<p class=meta>status <b>{esc(status(run))}</b> · started "
        f"{_started(run.path)} · {esc(run.path)}</p>",
        table([[k, v] for k, v in key_numbers(s)], header=False, css_class="kv"),
        "<h4>Diagnosis</h4>",
        diagnosis(s.get("diagnosis") or []),
        "<h4>Curves</h4>",
        charts(run),
    ]
    parts += result_sections(run.path)
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
        css = "note" if f.get("kind") in NOTES else "finding"
        items.append(
            f"<li class={css}><b>{esc(f.get('kind', '?'))}</b>: {esc(f.get('message', ''))}"
            f"{details if extra else ''}{advice}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def charts(run: Run) -> str:
    if not run.metrics:
        return "<p>no epochs finished yet</p>"
    figures = [
        figure(png_bytes(plot_curves([run], metrics, log=log)), caption)
        for caption, metrics, log in CHARTS
    ]
    return f"<div class=charts>{''.join(figures)}</div>"


def _started(path: Path) -> str:
    started = run_started(path)
    return "-" if started is None else f"{started:%Y-%m-%d %H:%M}"
