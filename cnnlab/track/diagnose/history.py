"""The view the diagnosis rules share: a run's per-epoch history as columns, with what the rules
judge it by (_History: status, classes, the early-stopping monitor), the queries several rules
ask of it (best epoch, peak lr), and the small helpers that turn numbers and epoch spans into a
finding's text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_EPOCHS = 3  # no verdict on fewer epochs (except non-finite losses)

Finding = dict[str, str]
Points = list[tuple[int, float]]


@dataclass
class _History:
    """The history as columns: epoch numbers and, per key, a float (maybe NaN) or None."""

    epochs: list[int]
    cols: dict[str, list[float | None]] = field(default_factory=dict)
    status: str = "completed"
    num_classes: int | None = None
    patience: int | None = None
    monitor: str = "val_acc"
    mode: str = "max"
    transfer: bool = False  # a head on a backbone: model.width/dropout are not its keys

    @property
    def wider(self) -> str:
        """The key that adds capacity, in words."""
        if self.transfer:
            return "a larger head (transfer.head=mlp) or a trained backbone (transfer.freeze=false)"
        return "a larger model (model.width x2)"

    @property
    def dropout(self) -> str:
        return "transfer.dropout" if self.transfer else "model.dropout"

    @classmethod
    def of(cls, history: Sequence[Any], keys: Sequence[str]) -> _History:
        rows = [row for row in history if isinstance(row, dict)]
        epochs = []
        for i, row in enumerate(rows):
            e = _number(row.get("epoch"))
            epochs.append(int(e) if e is not None and math.isfinite(e) else i + 1)
        cols = {key: [_number(row.get(key)) for row in rows] for key in keys}
        return cls(epochs, cols)

    def __len__(self) -> int:
        return len(self.epochs)

    def points(self, key: str) -> Points:
        """(epoch, value) of the epochs where `key` holds a finite number."""
        col = self.cols.get(key, [])
        return [(e, v) for e, v in zip(self.epochs, col, strict=False) if _finite(v)]

    def last(self, key: str) -> tuple[int, float] | None:
        pts = self.points(key)
        return pts[-1] if pts else None

    def before(self, epoch: int) -> None:
        """Keep only the epochs before `epoch`."""
        keep = [i for i, e in enumerate(self.epochs) if e < epoch]
        self.epochs = [self.epochs[i] for i in keep]
        self.cols = {k: [col[i] for i in keep] for k, col in self.cols.items()}


def _best(hist: _History) -> tuple[int, float] | None:
    pts = hist.points(hist.monitor)
    if not pts:
        return None
    pick = min if hist.mode == "min" else max
    return pick(pts, key=lambda p: p[1])  # the first of equals, as the checkpointing keeps it


def _last_both(hist: _History, a: str, b: str) -> tuple[int, float, float] | None:
    other = dict(hist.points(b))
    both = [(e, v, other[e]) for e, v in hist.points(a) if e in other]
    return both[-1] if both else None


def _peak_lr(hist: _History) -> float | None:
    lrs = [v for _, v in hist.points("lr") if v > 0]
    return max(lrs) if lrs else None


def _fmt(hist: _History, value: float) -> str:
    return f"{value:.1%}" if hist.monitor.endswith("acc") else f"{value:.4g}"


def _range(values: Sequence[float], spec: str) -> str:
    lo, hi = format(min(values), spec), format(max(values), spec)
    return lo if lo == hi else f"{lo}-{hi}"


def _span(first: int | None, last: int | None) -> str:
    first = last if first is None else first
    return str(first) if first == last else f"{first}-{last}"


def _epoch_list(epochs: Sequence[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    runs: list[list[int]] = []
    for e in sorted(set(epochs)):
        if runs and e == runs[-1][1] + 1:
            runs[-1][1] = e
        else:
            runs.append([e, e])
    return ", ".join(_span(a, b) for a, b in runs)


def _finding(kind: str, epochs: str, message: str, advice: str) -> Finding:
    return {"kind": kind, "epochs": epochs, "message": message, "advice": advice}


def _number(value: Any) -> float | None:
    """A float for int/float values (NaN and inf kept: they mean divergence), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
