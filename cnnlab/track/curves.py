"""Per-epoch curves of several runs, or groups of seeds, on one figure, labelled by what differs
between them.

Used by `cnnlab runs plot` and by the HTML report. matplotlib's Figure is used directly (no
pyplot), so no GUI backend is ever loaded and figures are freed with their last reference; it is
imported only when a figure is drawn, so `cnnlab runs list` (differing_keys) never
pays its 0.6 s import.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.atomic import atomic_path
from cnnlab.config.keys import flatten
from cnnlab.track.groups import stats
from cnnlab.track.registry import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Keys that differ between any two runs without describing the experiment.
IGNORED_KEYS = ("run.dir", "run.name")
LABEL_CHARS = 80  # a legend entry; keys that do not fit are left to the report's tooltip
VALUE_CHARS = 24  # one value in a label: a `model.layers` list alone runs to hundreds
STYLES = ("-", "--", ":", "-.")  # the metrics of one run or group


def differing_keys(
    configs: list[dict[str, Any]], ignore: Sequence[str] = IGNORED_KEYS
) -> list[str]:
    """Dotted config keys whose values are not the same in every config, in schema order."""
    flats = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [k for k in keys if k not in ignore and len({repr(flat.get(k)) for flat in flats}) > 1]


@dataclass(frozen=True)
class Label:
    short: str  # the legend entry: "optim.lr=0.1 model.name=cnn"
    full: str  # every differing key with its whole value, one per line (the report's tooltip)


def config_labels(
    configs: list[dict[str, Any]], names: list[str], ignore: Sequence[str] = IGNORED_KEYS
) -> list[Label]:
    """A label per config from the keys that differ, the shortest first, as many as fit in
    LABEL_CHARS, plus any needed to tell the configs apart; `names` when none differ.
    Labels of configs that differ are never equal, however long their values."""
    keys = differing_keys(configs, ignore)
    if not keys:
        return [Label(name, name) for name in names]
    flats = [flatten(c) for c in configs]
    full = {k: [str(flat.get(k)) for flat in flats] for k in keys}
    short = {k: _distinct_cuts([flat.get(k) for flat in flats]) for k in keys}

    def width(chosen: list[str]) -> int:
        return max(len(" ".join(f"{k}={short[k][i]}" for k in chosen)) for i in range(len(flats)))

    def told_apart(chosen: list[str]) -> int:
        return len(set(zip(*(full[k] for k in chosen), strict=True))) if chosen else 1

    chosen: list[str] = []
    # Shortest first: short differences (optim.lr=0.1) lead, long values are what gets left out.
    for key in sorted(keys, key=lambda k: len(k) + max(map(len, short[k]))):
        if width([*chosen, key]) <= LABEL_CHARS or told_apart([*chosen, key]) > told_apart(chosen):
            chosen.append(key)
    more = " …" if len(chosen) < len(keys) else ""
    return [
        Label(
            " ".join(f"{k}={short[k][i]}" for k in chosen) + more,
            "\n".join(f"{k}={full[k][i]}" for k in keys),
        )
        for i in range(len(flats))
    ]


def run_labels(runs: list[Run]) -> list[str]:
    """A legend entry per run: its differing keys ("optim.lr=0.1 model.name=cnn"), or the run
    directory's name when the configs are identical."""
    return [label.short for label in config_labels([r.config for r in runs], names(runs))]


def names(runs: list[Run]) -> list[str]:
    return [r.path.name for r in runs]


def _distinct_cuts(values: list[Any]) -> list[str]:
    """Each value as text of at most VALUE_CHARS; values that differ keep different texts: the
    cut start, else a list's length, else the text from just before where they first differ,
    else the cut start numbered."""
    texts = list(dict.fromkeys(map(str, values)))
    raw = dict(zip(map(str, values), values, strict=True))
    cuts = [_shorten(t, VALUE_CHARS) for t in texts]
    if len(set(cuts)) < len(texts) and all(isinstance(raw[t], list | tuple) for t in texts):
        counts = [len(raw[t]) for t in texts]
        cuts = (
            [f"[{n} item{'s' if n != 1 else ''}]" for n in counts]
            if len(set(counts)) == len(texts)
            else cuts
        )
    if len(set(cuts)) < len(texts):
        start = max(0, len(os.path.commonprefix(texts)) - 6)  # 6 characters of context
        cuts = ["…" + _shorten(t[start:], VALUE_CHARS - 1) for t in texts]
    if len(set(cuts)) < len(texts):
        cuts = [f"{_shorten(t, VALUE_CHARS - 3)}#{i + 1}" for i, t in enumerate(texts)]
    table = dict(zip(texts, cuts, strict=True))
    return [table[str(v)] for v in values]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_curves(
    runs: list[Run], metrics: list[str], log: bool = False, legend: bool = True
) -> Figure:
    """One axes: each metric of each run against the epoch; with several metrics (train_loss
    and val_loss) a run keeps its colour and the metrics differ by line style. On a log scale
    an accuracy is drawn as its error, 1 - acc (accuracies near 1 have no log range)."""
    return plot_groups([[r] for r in runs], metrics, log, run_labels(runs), legend=legend)


def plot_groups(
    groups: list[list[Run]],
    metrics: list[str],
    log: bool = False,
    labels: list[str] | None = None,
    *,
    legend: bool = True,
    seeds: bool = True,
) -> Figure:
    """plot_curves for groups of runs (seeds of one config): a group of several is drawn as
    its mean per epoch with a ±std band (sample std over the runs that reached the epoch), and
    with `seeds` each run faintly behind it. One group: a colour per metric; several: per group."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    labels = labels or [" ".join(names(g)) for g in groups]
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (group, label) in enumerate(zip(groups, labels, strict=True)):
        for j, metric in enumerate(metrics):
            colour = f"C{(i if len(groups) > 1 else j) % 10}"
            name = (
                metric if len(groups) == 1 else label if len(metrics) == 1 else f"{label} {metric}"
            )
            _draw(ax, group, metric, log, STYLES[j % 4], colour, name, seeds)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = [f"error (1 - {m})" if log and _is_accuracy(m) else m for m in metrics]
    ax.set_ylabel(", ".join(shown))
    if log:
        _log_scale(ax)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


def _draw(
    ax: Axes,
    group: list[Run],
    metric: str,
    log: bool,
    style: str,
    colour: str,
    name: str,
    seeds: bool,
) -> None:
    if len(group) == 1:
        points = _points(group[0], metric, log)
        if points:
            ax.plot(*zip(*points, strict=True), style, color=colour, label=name)
        return
    epochs, means, lows, highs = group_curve(group, metric, log)
    if not epochs:
        return
    for run in group if seeds else []:
        points = _points(run, metric, log)
        if points:
            ax.plot(*zip(*points, strict=True), style, color=colour, alpha=0.45, lw=0.8)
    ax.fill_between(epochs, lows, highs, color=colour, alpha=0.2, lw=0)
    ax.plot(epochs, means, style, color=colour, lw=2, label=f"{name} (mean ± std, n={len(group)})")


def group_curve(
    runs: list[Run], metric: str, log: bool = False
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs, then the mean, mean - std and mean + std of `metric` at each epoch over the runs
    that logged it (std 0 where only one did: a seed that stopped early)."""
    per_epoch: dict[int, list[float]] = {}
    for run in runs:
        for epoch, value in _points(run, metric, log):
            per_epoch.setdefault(epoch, []).append(value)
    epochs, means, lows, highs = [], [], [], []
    for epoch in sorted(per_epoch):
        s = stats(per_epoch[epoch])
        if s is None:
            continue
        spread = s.std or 0.0
        epochs.append(epoch)
        means.append(s.mean)
        lows.append(s.mean - spread)
        highs.append(s.mean + spread)
    return epochs, means, lows, highs


def _points(run: Run, metric: str, log: bool) -> list[tuple[int, float]]:
    error = log and _is_accuracy(metric)
    return [
        (m["epoch"], 1 - m[metric] if error else m[metric])
        for m in run.metrics
        if isinstance(m.get(metric), int | float) and isinstance(m.get("epoch"), int)
    ]


def _is_accuracy(metric: str) -> bool:
    return metric == "acc" or metric.endswith("_acc")


def _log_scale(ax: Axes) -> None:
    """A log y axis whose tick labels read 0.2, 0.3, not 2×10⁻¹: matplotlib labels the minor
    ticks of a range under one decade in scientific notation."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:.3g}" if super().__call__(x, pos) else ""  # the same ticks, plain

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain())
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False))


def colour(index: int) -> str:
    """The hex colour of the index-th run or group of a figure of several (for an HTML legend)."""
    from matplotlib.colors import to_hex

    return to_hex(f"C{index % 10}")


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
