"""Rules on a run's stability: non-finite values (diverged), loss spikes and val_acc collapses
(instability), and the signatures of a learning rate too large (lr_too_large)."""

from __future__ import annotations

import math
import statistics

from cnnlab.track.diagnose.history import (
    MIN_EPOCHS,
    Finding,
    _epoch_list,
    _finding,
    _History,
    _peak_lr,
    _range,
    _span,
)

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


def _non_finite(hist: _History) -> Finding | None:
    """A NaN/inf in the history. The guard raises on a non-finite training loss within the
    epoch, so this mostly catches evaluation (val_loss) going bad, which it never sees; a
    diverged status without one here is already the guard's finding."""
    for i, e in enumerate(hist.epochs):
        bad = [
            (k, hist.cols[k][i])
            for k in ("train_loss", "val_loss", "train_acc", "val_acc")
            if hist.cols[k][i] is not None and not math.isfinite(hist.cols[k][i])
        ]
        if bad:
            hist.before(e)
            what = " and ".join(f"{k} became {v}" for k, v in bad)
            before = hist.last("train_loss")
            context = f" (train_loss {before[1]:.4g} at epoch {before[0]})" if before else ""
            return _finding(
                "diverged",
                _span(e, e),
                f"{what} at epoch {e}{context}; later epochs are left out of this diagnosis",
                "try a lower optim.lr (e.g. /3), gradient clipping (train.grad_clip=1.0), "
                "a warm-up (schedule.warmup_epochs=1), or train.precision=fp32 if it is fp16",
            )
    return None


def _instability(hist: _History) -> Finding | None:
    if len(hist) < MIN_EPOCHS:
        return None
    events: list[tuple[int, str]] = []
    for key in ("train_loss", "val_loss"):
        pts = hist.points(key)
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
    pts = hist.points("val_acc")
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
    peak = _peak_lr(hist)
    lower = f"lower optim.lr (e.g. to {peak / 3:.2g})" if peak else "lower optim.lr (e.g. /3)"
    return _finding(
        "instability",
        _epoch_list([e for e, _ in events]),
        message,
        f"{lower}, clip gradients (train.grad_clip=1.0), add a warm-up "
        "(schedule.warmup_epochs=1), or average the weights (train.ema=0.999)",
    )


# One sign of too large an lr: its evidence, the epochs it spans, and the lr it suggests.
_Sign = tuple[str, list[int], float | None]


def _lr_too_large(hist: _History) -> Finding | None:
    loss = hist.points("train_loss")
    if len(loss) < MIN_EPOCHS:
        return None
    lrs = dict(hist.points("lr"))
    peak = _peak_lr(hist)
    signs = [
        sign
        for sign in (
            _fell_once_lr_decayed(loss, lrs),
            _above_chance(hist, loss, peak),
            _rose_at_peak_lr(loss, lrs, peak),
        )
        if sign is not None
    ]
    if not signs:
        return None
    epochs = [e for _, spanned, _ in signs for e in spanned]
    suggest = next((lr for _, _, lr in signs if lr is not None), None)  # the late fall's
    if suggest is not None:
        lower = f"lower optim.lr to about {suggest:.2g}, where the loss began to fall,"
    elif peak:
        lower = f"lower optim.lr (e.g. to {peak / 10:.2g})"
    else:
        lower = "lower optim.lr (e.g. /10)"
    return _finding(
        "lr_too_large",
        _span(min(epochs), max(epochs)),
        "; ".join(evidence for evidence, _, _ in signs),
        f"{lower} or add a warm-up (schedule.warmup_epochs=1); `cnnlab lr-find` shows the range "
        "where the loss falls fastest",
    )


def _fell_once_lr_decayed(loss: list[tuple[int, float]], lrs: dict[int, float]) -> _Sign | None:
    """The loss stayed put for STUCK_EPOCHS or more and only fell once the schedule had taken
    the lr well down."""
    e0, l0 = loss[0]
    stuck = 0
    while stuck < len(loss) and loss[stuck][1] >= (1 - STUCK_TOL) * l0:
        stuck += 1
    stuck_lrs = [lrs[e] for e, _ in loss[:stuck] if e in lrs]
    if not (STUCK_EPOCHS <= stuck < len(loss) and stuck_lrs):
        return None
    e_fall = loss[stuck][0]
    e_low, low = min(loss[stuck:], key=lambda p: p[1])
    lr_fall = lrs.get(e_fall)
    if low > LATE_FALL * l0 or lr_fall is None or lr_fall > LR_DECAYED * max(stuck_lrs):
        return None
    values = [v for _, v in loss[:stuck]]
    evidence = (
        f"train_loss stayed at {_range(values, '.4g')} over epochs "
        f"{_span(e0, loss[stuck - 1][0])} with lr {_range(stuck_lrs, '.2g')}, and only "
        f"fell (to {low:.4g} by epoch {e_low}) once the schedule had taken the lr down to "
        f"{lr_fall:.2g} (epoch {e_fall})"
    )
    return evidence, [e0, e_fall], lr_fall


def _above_chance(
    hist: _History, loss: list[tuple[int, float]], peak: float | None
) -> _Sign | None:
    """After the first epoch the loss stayed above that of a uniform guess."""
    if not (hist.num_classes and hist.num_classes >= 2):
        return None
    chance = math.log(hist.num_classes)
    later = [v for _, v in loss[1:]]
    if statistics.median(later) <= ABOVE_CHANCE * chance:
        return None
    evidence = (
        f"train_loss stayed at {_range(later, '.4g')} after epoch {loss[0][0]}, above "
        f"{chance:.4g}, the loss of a uniform guess over {hist.num_classes} classes"
        + (f", at lr up to {peak:.2g}" if peak else "")
    )
    return evidence, [loss[1][0], loss[-1][0]], None


def _rose_at_peak_lr(
    loss: list[tuple[int, float]], lrs: dict[int, float], peak: float | None
) -> _Sign | None:
    """In the first EARLY_EPOCHS the loss rose (short of a spike, which is instability's) at an
    lr near its peak."""
    if not peak:
        return None
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
            evidence = (
                f"train_loss rose from {a:.4g} (epoch {e_a}) to {b:.4g} (epoch {e_b}) "
                f"at lr {lr_b:.2g}, near its peak {peak:.2g}"
            )
            return evidence, [e_a, e_b], None
    return None
