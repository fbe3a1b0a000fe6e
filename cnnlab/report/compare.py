"""The comparison part of a report of several runs: one table row per run, or per group of
seeds of one config (track/groups.py) with mean ± std (n), and overlaid validation curves with
a legend that says what differs, in full on hover."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnlab.config.keys import flatten
from cnnlab.report.parts import attr, clipped, esc, figure, scroll, status
from cnnlab.track.console import summary_rows
from cnnlab.track.curves import (
    IGNORED_KEYS,
    Label,
    colour,
    config_labels,
    differing_keys,
    plot_groups,
    png_bytes,
)
from cnnlab.track.groups import NOT_THE_EXPERIMENT, Stats, stats
from cnnlab.track.registry import Run

# (column, summary.json key, how a group's Stats reads): the results a row compares.
RESULTS: tuple[tuple[str, str, Callable[[Stats], str]], ...] = (
    ("best val acc", "best_val_acc", lambda s: s.format(percent=True)),
    ("final val acc", "final_val_acc", lambda s: s.format(percent=True)),
    ("test acc", "test_acc", lambda s: s.format(percent=True)),
    ("epochs", "epochs_run", lambda s: f"{s.min:g}" if s.min == s.max else f"{s.min:g}–{s.max:g}"),
    ("train time", "train_seconds", lambda s: s.format(digits=1, unit="s")),
)


@dataclass(frozen=True)
class Row:
    """A line of the comparison: one run, or the runs of one config that differ by seed."""

    runs: list[Run]
    anchor: str  # the id of its section on the page: run-<i> or group-<j>

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def name(self) -> str:
        if len(self.runs) == 1:
            return self.runs[0].path.name
        seeds = [str(flatten(r.config).get("train.seed", "?")) for r in self.runs]
        return f"{len(self.runs)} seeds ({', '.join(seeds)})"

    def value(self, key: str) -> float | None:
        """summary.json's `key`, or its mean over the group."""
        s = stats([r.summary.get(key) for r in self.runs])
        return None if s is None else s.mean

    def results(self) -> list[str]:
        if len(self.runs) == 1:
            shown = dict(summary_rows(self.runs[0].summary))
            return [shown[column] for column, _, _ in RESULTS]
        cells = []
        for _, key, fmt in RESULTS:
            s = stats([r.summary.get(key) for r in self.runs])
            cells.append("-" if s is None else fmt(s))
        return cells

    def status(self) -> str:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[status(run)] = counts.get(status(run), 0) + 1
        if len(self.runs) == 1:
            return next(iter(counts))
        return ", ".join(f"{n} {what}" for what, n in counts.items())


def row_labels(rows: list[Row]) -> list[Label]:
    """Legend entries and group headings: the keys that differ between rows."""
    return config_labels([r.config for r in rows], [r.name for r in rows], _not_compared(rows))


def comparison(rows: list[Row]) -> str:
    """The table, what its highlight means, and (for two rows or more) the overlaid curves."""
    keys = differing_keys([r.config for r in rows], _not_compared(rows))
    best = best_rows(rows)
    # Results before the differing keys: a long value (a model.layers list) must not push them
    # off the page; long values are cut, with the whole value in the cell's tooltip.
    head = ["run", *(column for column, _, _ in RESULTS), "status", *keys]
    html = []
    for i, row in enumerate(rows):
        flat = flatten(row.config)
        link = f'<a href="#{row.anchor}"{attr("title", _paths(row))}>{esc(row.name)}</a>'
        cells = [_td(link), *(_td(esc(x), "num") for x in row.results()), _td(esc(row.status()))]
        cells += [_td(clipped(str(flat.get(k, "-")))) for k in keys]
        html.append(f"<tr{' class=best' if i in best else ''}>{''.join(cells)}</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    table = scroll(f"<table class=runs><tr>{header}</tr>{''.join(html)}</table>")
    note = (
        "<p class=meta>highlighted: the best by best val acc"
        + (" (mean over seeds)" if any(len(r.runs) > 1 for r in rows) else "")
        + " among the runs on the same dataset (data.name)</p>"
        if best
        else ""
    )
    return table + note + (overlay(rows) if len(rows) > 1 else "")


def best_rows(rows: list[Row]) -> set[int]:
    """Indices of the rows with the highest best val acc of their dataset, for datasets with
    at least two rows to compare: accuracies on different datasets do not compare."""
    by_data: dict[Any, list[tuple[float, int]]] = {}
    for i, row in enumerate(rows):
        acc = row.value("best_val_acc")
        if acc is not None:
            by_data.setdefault(flatten(row.config).get("data.name"), []).append((acc, i))
    best = set()
    for scored in by_data.values():
        if len(scored) > 1:
            top = max(acc for acc, _ in scored)
            best |= {i for acc, i in scored if acc == top}
    return best


def overlay(rows: list[Row]) -> str:
    """val_acc and val_loss of every row on one chart each (a group: its mean ± std band), and
    one HTML legend for both, each entry with every differing key in full on hover."""
    if not any(r.metrics for row in rows for r in row.runs):
        return ""
    labels = row_labels(rows)
    groups, short = [r.runs for r in rows], [label.short for label in labels]
    charts = "".join(
        figure(png_bytes(plot_groups(groups, [m], log, short, legend=False, seeds=False)), caption)
        for m, log, caption in (
            ("val_acc", False, "val_acc, all runs"),
            ("val_loss", True, "val_loss (log scale), all runs"),
        )
    )
    entries = "".join(
        f'<li{attr("title", label.full)}><span class=swatch style="background:{colour(i)}">'
        f'</span><a href="#{row.anchor}">{esc(label.short)}</a></li>'
        for i, (row, label) in enumerate(zip(rows, labels, strict=True))
    )
    return f"<div class=charts>{charts}</div><ul class=legend>{entries}</ul>"


def _not_compared(rows: list[Row]) -> tuple[str, ...]:
    """Config keys that are no difference between rows: names, and the seed once rows are
    groups that span seeds."""
    return NOT_THE_EXPERIMENT if any(len(r.runs) > 1 for r in rows) else IGNORED_KEYS


def _td(html: str, css_class: str = "") -> str:
    return f"<td{' class=' + css_class if css_class else ''}>{html}</td>"


def _paths(row: Row) -> str:
    return "\n".join(str(r.path) for r in row.runs)
