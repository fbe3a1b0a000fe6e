"""Diagnosis of a run from its per-epoch history: rules that name overfitting, instability,
divergence, underfitting, a learning rate too small or too large, and early stopping that cut a
run still improving, each with the epochs, the evidence in numbers, and which config key to
change in which direction.

A finding is an entry of summary.json's diagnosis list, shaped like the divergence guard's
(cnnlab/train/guard.py) plus the epochs it concerns: {"kind", "epochs", "message", "advice"},
all strings. Findings come most severe first (SEVERITY).

The thresholds below are conservative on purpose: a healthy run (loss falling with some noise,
a plateau at the end, a train/val gap of a few points) must produce no finding, and no rule but
the non-finite check judges fewer than MIN_EPOCHS epochs, whose curves are mostly the fast fall
of the start. The history is epoch-level (means over an epoch), so these rules see trends the
step-level guard cannot and miss single-batch events it catches.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_EPOCHS = 3  # no verdict on fewer epochs (except non-finite losses)

# Overfitting: val_loss rises for >= OVERFIT_RISE_EPOCHS epochs after its minimum, the mean of
# the last 3 val losses at least OVERFIT_RISE (relative) and OVERFIT_MIN_ABS_RISE (absolute:
# near-zero losses wobble by large factors) above it, while train_loss fell by OVERFIT_TRAIN_FALL
# (relative) since that minimum. Or the final train accuracy beats val by OVERFIT_GAP.
OVERFIT_RISE_EPOCHS = 3
OVERFIT_RISE = 0.15
OVERFIT_MIN_ABS_RISE = 0.02
OVERFIT_TRAIN_FALL = 0.05
OVERFIT_GAP = 0.10

# Instability: an epoch's loss above SPIKE_FACTOR x the median of the SPIKE_BASELINE epochs
# before it (floored at SPIKE_FLOOR, so that a memorised training set's 0.01 -> 0.03 is no
# spike); val_acc falling more than COLLAPSE_DROP below the best of the COLLAPSE_LOOKBACK epochs
# before. A collapse has recovered once val_acc is back within RECOVERED_WITHIN of that best.
SPIKE_FACTOR = 2.0
SPIKE_BASELINE = 3
SPIKE_FLOOR = 0.1
SPIKE_RECOVERED = 1.25  # a spiked loss is back once below this x its baseline
COLLAPSE_DROP = 0.15
COLLAPSE_LOOKBACK = 2
RECOVERED_WITHIN = 0.05
MAX_EVENTS = 3  # events spelled out in one message; the rest are counted

# Learning rate too large, three signatures:
# - a late start: train_loss stays within STUCK_TOL of epoch 1's for >= STUCK_EPOCHS epochs, then
#   falls below LATE_FALL x epoch 1's once the schedule has taken the lr to <= LR_DECAYED x its
#   value while stuck;
# - worse than a uniform guess: train_loss after epoch 1 (median) above ABOVE_CHANCE x ln(K);
# - train_loss rising by > EARLY_RISE x from one epoch to the next within the first
#   EARLY_EPOCHS epochs while the lr is >= HIGH_LR x its peak (a 2x jump is instability instead).
STUCK_TOL = 0.05
STUCK_EPOCHS = 3
LATE_FALL = 0.7
LR_DECAYED = 0.5
ABOVE_CHANCE = 1.1
EARLY_EPOCHS = 4
EARLY_RISE = 1.1
HIGH_LR = 0.5

# Underfitting (completed or early-stopped runs): final train_acc below UNDERFIT_ACC, or below
# CHANCE_FACTOR x chance (1/K), or train_loss flat (relative change < FLAT_REL over the last
# FLAT_EPOCHS epochs) while train_acc is below FLAT_MAX_ACC: the model cannot fit its own data.
UNDERFIT_ACC = 0.6
CHANCE_FACTOR = 1.5
FLAT_EPOCHS = 4
FLAT_REL = 0.02
FLAT_MAX_ACC = 0.8

# Learning rate too small (completed or early-stopped runs of >= SLOW_MIN_EPOCHS): train_loss
# falls in >= SLOW_DECREASING of the epochs, by FLAT_REL..SLOW_MAX_FALL of epoch 1's in all,
# still falls at the end at >= SLOW_NO_PLATEAU x its average pace (no plateau: a healthy curve
# slows down long before), and train_acc ends below SLOW_MAX_ACC.
SLOW_MIN_EPOCHS = 4
SLOW_DECREASING = 0.75
SLOW_MAX_FALL = 0.6
SLOW_NO_PLATEAU = 0.5
SLOW_MAX_ACC = 0.9

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

SEVERITY = (
    "diverged",
    "instability",
    "lr_too_large",
    "overfitting",
    "underfitting",
    "lr_too_small",
    "stopped_early",
    "still_improving",
)

KEYS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc")

Finding = dict[str, str]
Points = list[tuple[int, float]]


@dataclass
class _Run:
    """The history as columns: epoch numbers and, per key, a float (maybe NaN) or None."""

    epochs: list[int]
    cols: dict[str, list[float | None]] = field(default_factory=dict)
    status: str = "completed"
    num_classes: int | None = None
    patience: int | None = None
    monitor: str = "val_acc"
    mode: str = "max"

    @classmethod
    def of(cls, history: Sequence[Any], keys: Sequence[str]) -> _Run:
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


def diagnose(
    history: Sequence[dict[str, Any]],
    *,
    status: str,
    num_classes: int | None = None,
    early_stopping_patience: int | None = None,
    monitor: str = "val_acc",
    mode: str = "max",
) -> list[Finding]:
    """Findings for a run's per-epoch history (metrics.jsonl's rows), most severe first.

    `status` is summary.json's; `monitor`/`mode` are train.early_stopping's (they also pick
    best.safetensors). Missing keys, None and non-numbers are skipped; epochs from the first
    non-finite loss or accuracy on are left out after a "diverged" finding about it."""
    run = _Run.of(history, tuple(dict.fromkeys((*KEYS, monitor))))
    run.status, run.num_classes, run.patience = status, num_classes, early_stopping_patience
    run.monitor, run.mode = monitor, "min" if mode == "min" else "max"
    if not run.points(monitor):  # an unknown monitor: judge val_acc instead
        run.monitor, run.mode = "val_acc", "max"
    findings = []
    bad = _non_finite(run)
    if bad is not None:
        findings.append(bad)
    for rule in RULES:
        found = rule(run)
        if found is not None:
            findings.append(found)
    kinds = {f["kind"] for f in findings}
    # A named cause of poor fitting replaces the generic verdict (and its "raise the lr", which
    # would be wrong advice next to lr_too_large).
    if "lr_too_large" in kinds:
        findings = [f for f in findings if f["kind"] not in ("underfitting", "lr_too_small")]
    elif "lr_too_small" in kinds:
        findings = [f for f in findings if f["kind"] != "underfitting"]
    return sorted(findings, key=lambda f: SEVERITY.index(f["kind"]))


def _non_finite(run: _Run) -> Finding | None:
    """A NaN/inf in the history. The guard raises on a non-finite training loss within the
    epoch, so this mostly catches evaluation (val_loss) going bad, which it never sees; a
    diverged status without one here is already the guard's finding."""
    for i, e in enumerate(run.epochs):
        bad = [
            (k, run.cols[k][i])
            for k in ("train_loss", "val_loss", "train_acc", "val_acc")
            if run.cols[k][i] is not None and not math.isfinite(run.cols[k][i])
        ]
        if bad:
            run.before(e)
            what = " and ".join(f"{k} became {v}" for k, v in bad)
            before = run.last("train_loss")
            context = f" (train_loss {before[1]:.4g} at epoch {before[0]})" if before else ""
            return _finding(
                "diverged",
                _span(e, e),
                f"{what} at epoch {e}{context}; later epochs are left out of this diagnosis",
                "try a lower optim.lr (e.g. /3), gradient clipping (train.grad_clip=1.0), "
                "a warm-up (schedule.warmup_epochs=1), or train.precision=fp32 if it is fp16",
            )
    return None


def _overfitting(run: _Run) -> Finding | None:
    if len(run) < MIN_EPOCHS:
        return None
    evidence, first, last = [], None, None
    val = run.points("val_loss")
    train = dict(run.points("train_loss"))
    if len(val) >= MIN_EPOCHS:
        i = min(range(len(val)), key=lambda k: val[k][1])
        (e_min, v_min), (e_end, v_end) = val[i], val[-1]
        tail = statistics.fmean(v for _, v in val[-3:])
        t_min, t_end = train.get(e_min), train.get(e_end)
        if (
            len(val) - i - 1 >= OVERFIT_RISE_EPOCHS
            and tail >= v_min * (1 + OVERFIT_RISE)
            and tail - v_min >= OVERFIT_MIN_ABS_RISE
            and t_min is not None
            and t_end is not None
            and t_end <= t_min * (1 - OVERFIT_TRAIN_FALL)
        ):
            evidence.append(
                f"val_loss rose from {v_min:.4g} (epoch {e_min}) to {v_end:.4g} "
                f"(epoch {e_end}) while train_loss fell from {t_min:.4g} to {t_end:.4g}"
            )
            first, last = e_min, e_end
    both = _last_both(run, "train_acc", "val_acc")
    if both is not None:
        e, ta, va = both
        if ta - va > OVERFIT_GAP:
            evidence.append(
                f"train_acc {ta:.1%} vs val_acc {va:.1%} at epoch {e}: a gap of "
                f"{100 * (ta - va):.1f} points"
            )
            first, last = first or e, e
    if not evidence:
        return None
    advice = (
        "add augmentation (augment.train, e.g. [{op: crop, padding: 4}, {op: flip}]), raise "
        "optim.weight_decay (e.g. 5e-4, or x10), set model.dropout (e.g. 0.3)"
    )
    best = _best(run)
    if best is not None:
        e_best, v_best = best
        if run.patience is None:
            advice += (
                f", or stop earlier (train.epochs={e_best} or train.early_stopping.patience=3)"
            )
        advice += f"; best.safetensors holds epoch {e_best} ({run.monitor} {_fmt(run, v_best)})"
    return _finding("overfitting", _span(first, last), "; ".join(evidence), advice)


def _instability(run: _Run) -> Finding | None:
    if len(run) < MIN_EPOCHS:
        return None
    events: list[tuple[int, str]] = []
    for key in ("train_loss", "val_loss"):
        pts = run.points(key)
        spiked_before = False
        for k in range(1, len(pts)):
            e, v = pts[k]
            base = statistics.median(x for _, x in pts[max(0, k - SPIKE_BASELINE) : k])
            spiked = v > SPIKE_FACTOR * max(base, SPIKE_FLOOR)
            if spiked and not spiked_before:  # a loss that stays up is one event
                text = f"{key} jumped to {v:.4g} at epoch {e} from about {base:.4g}"
                back = next(
                    ((e2, x) for e2, x in pts[k + 1 :] if x <= SPIKE_RECOVERED * base), None
                )
                text += f", back to {back[1]:.4g} by epoch {back[0]}" if back else ""
                events.append((e, text))
            spiked_before = spiked
    pts = run.points("val_acc")
    collapsed_before = False
    for k in range(1, len(pts)):
        e, v = pts[k]
        e_ref, ref = max(pts[max(0, k - COLLAPSE_LOOKBACK) : k], key=lambda p: p[1])
        collapsed = ref - v > COLLAPSE_DROP
        if collapsed and not collapsed_before:
            text = f"val_acc fell from {ref:.1%} (epoch {e_ref}) to {v:.1%} (epoch {e})"
            back = next(((e2, x) for e2, x in pts[k + 1 :] if x >= ref - RECOVERED_WITHIN), None)
            text += f" and recovered to {back[1]:.1%} by epoch {back[0]}" if back else ""
            events.append((e, text))
        collapsed_before = collapsed
    if not events:
        return None
    events.sort()
    message = "; ".join(text for _, text in events[:MAX_EVENTS])
    if len(events) > MAX_EVENTS:
        message += f" (and {len(events) - MAX_EVENTS} more)"
    peak = _peak_lr(run)
    lower = f"lower optim.lr (e.g. to {peak / 3:.2g})" if peak else "lower optim.lr (e.g. /3)"
    return _finding(
        "instability",
        _epoch_list([e for e, _ in events]),
        message,
        f"{lower}, clip gradients (train.grad_clip=1.0), add a warm-up "
        "(schedule.warmup_epochs=1), or average the weights (train.ema=0.999)",
    )


def _lr_too_large(run: _Run) -> Finding | None:
    loss = run.points("train_loss")
    if len(loss) < MIN_EPOCHS:
        return None
    lrs = dict(run.points("lr"))
    peak = _peak_lr(run)
    evidence, epochs, suggest = [], [], None
    e0, l0 = loss[0]
    stuck = 0
    while stuck < len(loss) and loss[stuck][1] >= (1 - STUCK_TOL) * l0:
        stuck += 1
    stuck_lrs = [lrs[e] for e, _ in loss[:stuck] if e in lrs]
    if STUCK_EPOCHS <= stuck < len(loss) and stuck_lrs:
        e_fall = loss[stuck][0]
        e_low, low = min(loss[stuck:], key=lambda p: p[1])
        lr_fall = lrs.get(e_fall)
        if low <= LATE_FALL * l0 and lr_fall is not None and lr_fall <= LR_DECAYED * max(stuck_lrs):
            values = [v for _, v in loss[:stuck]]
            evidence.append(
                f"train_loss stayed at {_range(values, '.4g')} over epochs "
                f"{_span(e0, loss[stuck - 1][0])} with lr {_range(stuck_lrs, '.2g')}, and only "
                f"fell (to {low:.4g} by epoch {e_low}) once the schedule had taken the lr down to "
                f"{lr_fall:.2g} (epoch {e_fall})"
            )
            epochs += [e0, e_fall]
            suggest = lr_fall
    if run.num_classes and run.num_classes >= 2:
        chance = math.log(run.num_classes)
        later = [v for _, v in loss[1:]]
        if statistics.median(later) > ABOVE_CHANCE * chance:
            evidence.append(
                f"train_loss stayed at {_range(later, '.4g')} after epoch {e0}, above "
                f"{chance:.4g}, the loss of a uniform guess over {run.num_classes} classes"
                + (f", at lr up to {peak:.2g}" if peak else "")
            )
            epochs += [loss[1][0], loss[-1][0]]
    if peak:
        for k in range(1, min(EARLY_EPOCHS, len(loss))):
            (e_a, a), (e_b, b) = loss[k - 1], loss[k]
            base = statistics.median(x for _, x in loss[max(0, k - SPIKE_BASELINE) : k])
            lr_b = lrs.get(e_b)
            if (
                b > EARLY_RISE * a
                and b <= SPIKE_FACTOR * max(base, SPIKE_FLOOR)  # a spike is instability's
                and lr_b is not None
                and lr_b >= HIGH_LR * peak
            ):
                evidence.append(
                    f"train_loss rose from {a:.4g} (epoch {e_a}) to {b:.4g} (epoch {e_b}) "
                    f"at lr {lr_b:.2g}, near its peak {peak:.2g}"
                )
                epochs += [e_a, e_b]
                break
    if not evidence:
        return None
    if suggest is not None:
        lower = f"lower optim.lr to about {suggest:.2g}, where the loss began to fall,"
    elif peak:
        lower = f"lower optim.lr (e.g. to {peak / 10:.2g})"
    else:
        lower = "lower optim.lr (e.g. /10)"
    return _finding(
        "lr_too_large",
        _span(min(epochs), max(epochs)),
        "; ".join(evidence),
        f"{lower} or add a warm-up (schedule.warmup_epochs=1); `cnnlab lr-find` shows the range "
        "where the loss falls fastest",
    )


def _underfitting(run: _Run) -> Finding | None:
    if run.status not in ("completed", "early_stopped") or len(run) < MIN_EPOCHS:
        return None
    acc = run.last("train_acc")
    if acc is None:
        return None
    e_end, ta = acc
    loss = run.points("train_loss")
    evidence, first = [], run.epochs[0]
    chance = 1 / run.num_classes if run.num_classes and run.num_classes >= 2 else None
    at_chance = chance is not None and ta < CHANCE_FACTOR * chance
    if at_chance:
        evidence.append(
            f"train_acc ended at {ta:.1%} (epoch {e_end}), near chance "
            f"({chance:.1%} for {run.num_classes} classes)"
        )
    elif ta < UNDERFIT_ACC:
        evidence.append(f"train_acc ended at only {ta:.1%} (epoch {e_end})")
    if len(loss) >= FLAT_EPOCHS and ta < FLAT_MAX_ACC:
        (e_a, a), (e_b, b) = loss[-FLAT_EPOCHS], loss[-1]
        change = (b - a) / a if a > 0 else 0.0
        if abs(change) < FLAT_REL:
            evidence.append(
                f"train_loss flat over epochs {_span(e_a, e_b)}: {a:.4g} -> {b:.4g} "
                f"({change:+.1%})" + ("" if evidence else f" with train_acc {ta:.1%}")
            )
            first = e_a if len(evidence) == 1 else first
    if not evidence:
        return None
    if at_chance:
        advice = (
            "the model learned next to nothing: raise optim.lr (x10; `cnnlab lr-find` suggests "
            "a value), then train longer (train.epochs up) or wider (model.width x2)"
        )
    else:
        advice = (
            "a larger model (model.width x2), longer training (train.epochs up), a higher "
            "optim.lr, and less regularisation (lower optim.weight_decay, model.dropout, "
            "train.label_smoothing, lighter augment.train)"
        )
    return _finding("underfitting", _span(first, e_end), "; ".join(evidence), advice)


def _lr_too_small(run: _Run) -> Finding | None:
    if run.status not in ("completed", "early_stopped"):
        return None
    loss, acc = run.points("train_loss"), run.last("train_acc")
    if len(loss) < SLOW_MIN_EPOCHS or acc is None or acc[1] >= SLOW_MAX_ACC:
        return None
    values = [v for _, v in loss]
    steps = len(values) - 1
    falls = [a - b for a, b in zip(values, values[1:], strict=False)]
    total = values[0] - values[-1]
    if values[0] <= 0 or not FLAT_REL <= total / values[0] <= SLOW_MAX_FALL:
        return None
    recent = max(2, steps // 3)
    pace, recent_pace = total / steps, (values[-1 - recent] - values[-1]) / recent
    if (
        sum(f > 0 for f in falls) < SLOW_DECREASING * steps
        or falls[-1] <= 0
        or recent_pace < SLOW_NO_PLATEAU * pace
    ):
        return None
    peak = _peak_lr(run)
    return _finding(
        "lr_too_small",
        _span(loss[0][0], loss[-1][0]),
        f"train_loss fell slowly and steadily, {values[0]:.4g} -> {values[-1]:.4g} "
        f"({-total / values[0]:+.0%}) over epochs {_span(loss[0][0], loss[-1][0])}, still "
        f"{-recent_pace:+.3g}/epoch at the end ({-pace:+.3g}/epoch on average), and train_acc "
        f"reached only {acc[1]:.1%}",
        "raise optim.lr (x3 to x10"
        + (f" of its peak {peak:.2g}" if peak else "")
        + "; `cnnlab lr-find` suggests a value) or train longer (train.epochs up)",
    )


def _stopped_early(run: _Run) -> Finding | None:
    if run.status != "early_stopped":
        return None
    window = max(TREND_WINDOW, 2 * (run.patience or 1) + 2)
    trend = _improving(run, window, min_points=TREND_WINDOW - 1)
    if trend is None:
        return None
    (e_a, _), (e_b, _) = trend.points[0], trend.points[-1]
    patience = f" (patience {run.patience})" if run.patience else ""
    raise_to = f" (e.g. to {max(2 * run.patience, run.patience + 3)})" if run.patience else ""
    return _finding(
        "stopped_early",
        _span(e_a, e_b),
        f"early stopping ended the run at epoch {e_b}{patience}, but {run.monitor} was still "
        f"trending {trend.direction} over epochs {_span(e_a, e_b)}: {trend.describe(run)}",
        f"raise train.early_stopping.patience{raise_to} or lower train.early_stopping.min_delta; "
        "averaged weights (train.ema=0.999) make the monitored metric less noisy",
    )


def _still_improving(run: _Run) -> Finding | None:
    if run.status != "completed":
        return None
    trend = _improving(run, TREND_WINDOW, min_points=TREND_MIN_POINTS)
    if trend is None:
        return None
    (e_a, _), (e_b, _) = trend.points[0], trend.points[-1]
    more = max(e_b + 1, round(1.5 * e_b))
    return _finding(
        "still_improving",
        _span(e_a, e_b),
        f"{run.monitor} was still {'rising' if trend.direction == 'up' else 'falling'} in the "
        f"final epochs "
        f"{_span(e_a, e_b)}: {trend.describe(run)}",
        f"train longer (train.epochs={more} or more); the schedule then decays more slowly",
    )


RULES: tuple[Callable[[_Run], Finding | None], ...] = (
    _instability,
    _lr_too_large,
    _overfitting,
    _underfitting,
    _lr_too_small,
    _stopped_early,
    _still_improving,
)


@dataclass
class _Trend:
    points: Points  # the window, in the metric's own units
    slope: float  # per epoch, in the "better" direction
    scatter: float  # residual standard deviation around the fitted line
    direction: str  # "up" | "down"
    acc_like: bool

    def describe(self, run: _Run) -> str:
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


def _improving(run: _Run, window: int, min_points: int) -> _Trend | None:
    """The monitored metric's trend over the last `window` epochs, when it still improves
    clearly (see TREND_*), else None. After an early stop the last half holds the epochs that
    did not improve, so only a clear trend survives the pace test: the rule errs towards silence."""
    pts = run.points(run.monitor)
    # At most the second half of the run: earlier epochs are the fast rise of any healthy curve.
    pts = pts[-min(window, max(TREND_MIN_POINTS, len(pts) // 2)) :]
    if len(pts) < max(min_points, TREND_MIN_POINTS):
        return None
    sign = -1.0 if run.mode == "min" else 1.0
    values = [sign * v for _, v in pts]
    slope, scatter = _fit(values)
    half_slope, _ = _fit(values[len(values) // 2 :])
    gain = slope * (len(values) - 1)
    acc_like = run.monitor.endswith("acc")
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


def _best(run: _Run) -> tuple[int, float] | None:
    pts = run.points(run.monitor)
    if not pts:
        return None
    pick = min if run.mode == "min" else max
    return pick(pts, key=lambda p: p[1])  # the first of equals, as the checkpointing keeps it


def _last_both(run: _Run, a: str, b: str) -> tuple[int, float, float] | None:
    other = dict(run.points(b))
    both = [(e, v, other[e]) for e, v in run.points(a) if e in other]
    return both[-1] if both else None


def _peak_lr(run: _Run) -> float | None:
    lrs = [v for _, v in run.points("lr") if v > 0]
    return max(lrs) if lrs else None


def _fmt(run: _Run, value: float) -> str:
    return f"{value:.1%}" if run.monitor.endswith("acc") else f"{value:.4g}"


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
