"""The section of a group of seeds (runs of one config that differ only by train.seed, as
`cnnlab train --seeds N` writes them): a row per seed and their mean ± std, and loss and
accuracy curves with every seed drawn faintly behind the mean and its ±std band."""

from __future__ import annotations

from pathlib import Path

from cnnlab.config.keys import flatten
from cnnlab.report.compare import RESULTS, Row
from cnnlab.report.parts import attr, esc, figure, scroll, status
from cnnlab.track.curves import Label, plot_groups, png_bytes

CURVES = (("loss", ["train_loss", "val_loss"]), ("accuracy", ["train_acc", "val_acc"]))


def group_section(row: Row, label: Label, anchors: dict[Path, str]) -> str:
    """`anchors`: the id of each run's own section, to link the seed rows to."""
    head = ["run", "train.seed", *(column for column, _, _ in RESULTS), "status"]
    lines = []
    for run in row.runs:
        name = f'<a href="#{anchors[run.path]}">{esc(run.path.name)}</a>'
        seed = esc(flatten(run.config).get("train.seed", "-"))
        numbers = "".join(f"<td class=num>{esc(x)}</td>" for x in Row([run], "").results())
        lines.append(f"<tr><td>{name}</td><td>{seed}</td>{numbers}<td>{esc(status(run))}</td></tr>")
    numbers = "".join(f"<td class=num>{esc(x)}</td>" for x in row.results())
    lines.append(
        f"<tr class=mean><td>mean ± std (n)</td><td></td>{numbers}<td>{esc(row.status())}</td></tr>"
    )
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    table = scroll(f"<table class=runs><tr>{header}</tr>{''.join(lines)}</table>")
    charts = ""
    if any(r.metrics for r in row.runs):
        charts = (
            "<div class=charts>"
            + "".join(
                figure(png_bytes(plot_groups([row.runs], metrics)), f"{name}: seeds and mean ± std")
                for name, metrics in CURVES
            )
            + "</div>"
        )
    return (
        f'<section id="{row.anchor}"><h3{attr("title", label.full)}>{esc(label.short)}</h3>'
        f"<p class=meta>{len(row.runs)} runs of one config that differ only by train.seed; std "
        "is the sample standard deviation over the runs</p>"
        f"{table}{charts}</section>"
    )
