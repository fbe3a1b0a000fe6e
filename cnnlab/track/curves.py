"""Per-epoch curves of several runs on one figure, labelled by what differs between them.

Used by `cnnlab runs plot` and by the HTML report. matplotlib's Figure is used directly (no
pyplot), so no GUI backend is ever loaded and figures are freed with their last reference; it is
imported only when a figure is drawn, so `cnnlab runs list` (differing_keys) never
pays its 0.6 s import.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.atomic import atomic_path
from cnnlab.config.load import flatten
from cnnlab.track.registry import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Keys that differ between any two runs without describing the experiment.
IGNORED_KEYS = ("run.dir", "run.name")


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose values are not the same in every config, in schema order."""
    flats = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [
        k for k in keys if k not in IGNORED_KEYS and len({repr(flat.get(k)) for flat in flats}) > 1
    ]


def run_labels(runs: list[Run]) -> list[str]:
    """A legend entry per run: its differing keys ("optim.lr=0.1 model.name=cnn"), or the run
    directory's name when the configs are identical (e.g. seeds of one config)."""
    keys = differing_keys([r.config for r in runs])
    if not keys:
        return [r.path.name for r in runs]
    return [
        _shorten(" ".join(f"{k}={_shorten(str(flatten(r.config).get(k)), 24)}" for k in keys), 80)
        for r in runs
    ]


def _shorten(text: str, limit: int) -> str:
    """Legends stay legible: a `model.layers` list alone can run to hundreds of characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_curves(runs: list[Run], metrics: list[str], log: bool = False) -> Figure:
    """One axes: each metric of each run against the epoch; with several metrics (train_loss
    and val_loss) a run keeps its colour and the metrics differ by line style."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    styles = ["-", "--", ":", "-."]
    for i, (run, label) in enumerate(zip(runs, run_labels(runs), strict=True)):
        for j, metric in enumerate(metrics):
            points = [(m["epoch"], m[metric]) for m in run.metrics if m.get(metric) is not None]
            if not points:
                continue
            name = metric if len(runs) == 1 else label if len(metrics) == 1 else f"{label} {metric}"
            ax.plot(*zip(*points, strict=True), styles[j % 4], color=f"C{i % 10}", label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metrics[0] if len(metrics) == 1 else ", ".join(metrics))
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, for embedding (base64) in a self-contained HTML page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
