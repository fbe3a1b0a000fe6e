"""The sweep part of a report: for a folder that holds a sweep (its sweep.json), the best
trial, Optuna's plots and the trials table, as `cnnlab sweep` and `cnnlab sweep show` wrote
them (trials.csv, best.yaml, *.png). Read from files only: report/ does not run Optuna.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from cnnlab.report.parts import esc, figure, table
from cnnlab.track.sweepdir import BEST_YAML, PLOTS, SWEEP_JSON, TRIALS_CSV


def sweep_sections(targets: Sequence[str | Path]) -> str:
    """A section per target that is a sweep directory; "" when none is."""
    return "".join(_section(Path(t)) for t in targets if (Path(t) / SWEEP_JSON).is_file())


def _section(folder: Path) -> str:
    try:
        name = json.loads((folder / SWEEP_JSON).read_text()).get("study", folder.name)
    except (OSError, ValueError, AttributeError):
        name = folder.name
    parts = [f"<h2>Sweep {esc(name)}</h2>"]
    best = folder / BEST_YAML
    if best.is_file():
        first = best.read_text().splitlines()[0].lstrip("# ")
        parts.append(f"<p class=meta>{esc(first)} · config: {esc(best)}</p>")
    figures = [
        figure((folder / png).read_bytes(), caption)
        for png, caption in PLOTS
        if (folder / png).is_file()
    ]
    if figures:
        parts.append(f"<div class=charts>{''.join(figures)}</div>")
    rows = _trials(folder / TRIALS_CSV)
    if rows:
        parts.append(f"<h3>Trials</h3>{table(rows, header=True, css_class='runs')}")
    return "".join(parts)


def _trials(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            return [row for row in csv.reader(f)]
    except (OSError, csv.Error):
        return []
