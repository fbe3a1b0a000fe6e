"""Rules on a run's progress at its end: early stopping that cut a run whose monitored metric
still trended better (stopped_early), and a completed run still improving (still_improving),
both judged by a least-squares trend over the final epochs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cnnlab.track.diagnose.history import Finding, Points, _finding, _History, _span

# Trends of the monitored metric (stopped_early, still_improving) over the last TREND_WINDOW
# epochs (early stopping: 2 x patience + 2 if more), never more than the second half of the run:
# a least-squares slope whose gain over the window is >= TREND_SIGNIFICANCE x the scatter around
# the line and >= TREND_MIN_GAIN_ACC (accuracies) or TREND_MIN_GAIN_REL of the value (others),
# and whose last half still climbs at >= TREND_KEEP_PACE x that slope (a plateau does not).
TREND_WINDOW = 6
TREND_MIN_POINTS = 4
TREND_SIGNIFICANCE = 4.0
TREND_MIN_GAIN_ACC = 0.03
TREND_MIN_GAIN_REL = 0.03
TREND_KEEP_PACE = 0.5


def _stopped_early(hist: _History) -> Finding | None:
    if hist.status != "early_stopped":
        return None
    window = max(TREND_WINDOW, 2 * (hist.patience or 1) + 2)
    trend = _improving(hist, window, min_points=TREND_WINDOW - 1)
    if trend is None:
        return None
    (e_a, _), (e_b, _) = trend.points[0], trend.points[-1]
    patience = f" (patience {hist.patience})" if hist.patience else ""
    raise_to = f" (e.g. to {max(2 * hist.patience, hist.patience + 3)})" if hist.patience else ""
    return _finding(
        "stopped_early",
        _span(e_a, e_b),
        f"early stopping ended the run at epoch {e_b}{patience}, but {hist.monitor} was still "
        f"trending {trend.direction} over epochs {_span(e_a, e_b)}: {trend.describe(hist)}",
        f"raise train.early_stopping.patience{raise_to} or lower train.early_stopping.min_delta; "
        "averaged weights (train.ema=0.999) make the monitored metric less noisy",
    )


def _still_improving(hist: _History) -> Finding | None:
    if hist.status != "completed":
        return None
    trend = _improving(hist, TREND_WINDOW, min_points=TREND_MIN_POINTS)
    if trend is None:
        return None
    (e_a, _), (e_b, _) = trend.points[0], trend.points[-1]
    more = max(e_b + 1, round(1.5 * e_b))
    return _finding(
        "still_improving",
        _span(e_a, e_b),
        f"{hist.monitor} was still {'rising' if trend.direction == 'up' else 'falling'} in the "
        f"final epochs "
        f"{_span(e_a, e_b)}: {trend.describe(hist)}",
        f"train longer (train.epochs={more} or more); the schedule then decays more slowly",
    )


@dataclass
class _Trend:
    points: Points  # the window, in the metric's own units
    slope: float  # per epoch, in the "better" direction
    scatter: float  # residual standard deviation around the fitted line
    direction: str  # "up" | "down"
    acc_like: bool

    def describe(self, hist: _History) -> str:
        first, last = self.points[0][1], self.points[-1][1]
        sign = 1 if self.direction == "up" else -1
        gain = self.slope * (len(self.points) - 1)
        if self.acc_like:
            return (
                f"{sign * 100 * self.slope:+.2g} points/epoch ({first:.1%} -> {last:.1%}), "
                f"{sign * 100 * gain:+.2g} points in all against {100 * self.scatter:.2g} points "
                "of scatter"
            )
        return (
            f"{sign * self.slope:+.3g}/epoch ({first:.4g} -> {last:.4g}), {sign * gain:+.3g} in "
            f"all against {self.scatter:.2g} of scatter"
        )


def _improving(hist: _History, window: int, min_points: int) -> _Trend | None:
    """The monitored metric's trend over the last `window` epochs, when it still improves
    clearly (see TREND_*), else None. After an early stop the last half holds the epochs that
    did not improve, so only a clear trend survives the pace test: the rule errs towards silence."""
    pts = hist.points(hist.monitor)
    # At most the second half of the run: earlier epochs are the fast rise of any healthy curve.
    pts = pts[-min(window, max(TREND_MIN_POINTS, len(pts) // 2)) :]
    if len(pts) < max(min_points, TREND_MIN_POINTS):
        return None
    sign = -1.0 if hist.mode == "min" else 1.0
    values = [sign * v for _, v in pts]
    slope, scatter = _fit(values)
    half_slope, _ = _fit(values[len(values) // 2 :])
    gain = slope * (len(values) - 1)
    acc_like = hist.monitor.endswith("acc")
    min_gain = (
        TREND_MIN_GAIN_ACC
        if acc_like
        else TREND_MIN_GAIN_REL * abs(statistics.fmean(v for _, v in pts))
    )
    if (
        slope <= 0
        or gain < TREND_SIGNIFICANCE * scatter
        or gain < min_gain
        or half_slope < TREND_KEEP_PACE * slope
    ):
        return None
    return _Trend(pts, slope, scatter, "down" if sign < 0 else "up", acc_like)


def _fit(values: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope per step and the residuals' standard deviation."""
    n = len(values)
    if n < 2:
        return 0.0, 0.0
    mx, my = (n - 1) / 2, statistics.fmean(values)
    sxx = sum((x - mx) ** 2 for x in range(n))
    slope = sum((x - mx) * (y - my) for x, y in enumerate(values)) / sxx
    residuals = [y - (my + slope * (x - mx)) for x, y in enumerate(values)]
    scatter = math.sqrt(sum(r * r for r in residuals) / (n - 2)) if n > 2 else 0.0
    return slope, scatter
