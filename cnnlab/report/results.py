"""What analysis commands left in a run directory, on the page: each confusion matrix and each
robustness table and chart, whatever produced it (confusion.csv today; confusion-test.csv,
confusion-val-tta.png, robustness-<subset>.csv as `eval` and `robustness` name them by what
they measured), captioned by that suffix."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cnnlab.report.parts import esc, image, is_number, table

# (title, file-name prefix, cells are fractions shown as %): the CSVs' contracts are in
# track/rundir.py; robustness.csv holds accuracies (and a last row of errors) as fractions,
# where the CLI and robustness.md show percentages.
KINDS = (("Confusion matrix", "confusion", False), ("Robustness", "robustness", True))


def result_sections(path: Path) -> list[str]:
    """A <h4> section per result found: its table (from the .csv) and/or its image (.png)."""
    parts = []
    for title, prefix, percent in KINDS:
        files = [*path.glob(f"{prefix}*.csv"), *path.glob(f"{prefix}*.png")]
        for stem in sorted({f.stem for f in files if f.is_file()}):
            what = stem[len(prefix) :].strip("-_")
            heading = f"{title} ({what})" if what else title
            found = []
            if (path / f"{stem}.csv").is_file():
                found.append(csv_table(path / f"{stem}.csv", percent))
            if (path / f"{stem}.png").is_file():
                png = (path / f"{stem}.png").read_bytes()
                found.append(image(png, heading, css_class="wide"))
            parts.append(f"<h4>{esc(heading)}</h4>{''.join(found)}")
    return parts


def csv_table(path: Path, percent: bool) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text(errors="replace"))))
    if not rows:
        return "<p>(empty)</p>"
    if percent:  # the header row and the label column stay as they are
        rows = [rows[0], *([row[0], *map(_percent, row[1:])] for row in rows[1:] if row)]
    note = "<p class=meta>in % (the CSV holds fractions)</p>" if percent else ""
    return table(rows, header=True) + note


def _percent(cell: str) -> str:
    return f"{100 * float(cell):.2f}" if is_number(cell) else cell
