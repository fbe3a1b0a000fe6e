"""Rules on how well a run fits its data: overfitting (val_loss rising, a train/val gap),
underfitting (low or flat train accuracy), and a learning rate too small (a slow, steady fall)."""

from __future__ import annotations

import statistics

from cnnlab.track.diagnose.history import (
    MIN_EPOCHS,
    Finding,
    _best,
    _finding,
    _fmt,
    _History,
    _last_both,
    _peak_lr,
    _span,
)

# Overfitting: val_loss rises for >= OVERFIT_RISE_EPOCHS epochs after its minimum, the mean of
# the last 3 val losses at least OVERFIT_RISE (relative) and OVERFIT_MIN_ABS_RISE (absolute:
# near-zero losses wobble by large factors) above it, while train_loss fell by OVERFIT_TRAIN_FALL
# (relative) since that minimum. Or the final train accuracy beats val by OVERFIT_GAP.
OVERFIT_RISE_EPOCHS = 3
OVERFIT_RISE = 0.15
OVERFIT_MIN_ABS_RISE = 0.02
OVERFIT_TRAIN_FALL = 0.05
OVERFIT_GAP = 0.10

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


def _overfitting(hist: _History) -> Finding | None:
    if len(hist) < MIN_EPOCHS:
        return None
    evidence, first, last = [], None, None
    val = hist.points("val_loss")
    train = dict(hist.points("train_loss"))
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
    both = _last_both(hist, "train_acc", "val_acc")
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
        f"optim.weight_decay (e.g. 5e-4, or x10), set {hist.dropout} (e.g. 0.3)"
    )
    best = _best(hist)
    if best is not None:
        e_best, v_best = best
        if hist.patience is None:
            advice += (
                f", or stop earlier (train.epochs={e_best} or train.early_stopping.patience=3)"
            )
        advice += f"; best.safetensors holds epoch {e_best} ({hist.monitor} {_fmt(hist, v_best)})"
    return _finding("overfitting", _span(first, last), "; ".join(evidence), advice)


def _underfitting(hist: _History) -> Finding | None:
    if hist.status not in ("completed", "early_stopped") or len(hist) < MIN_EPOCHS:
        return None
    acc = hist.last("train_acc")
    if acc is None:
        return None
    e_end, ta = acc
    loss = hist.points("train_loss")
    evidence, first = [], hist.epochs[0]
    chance = 1 / hist.num_classes if hist.num_classes and hist.num_classes >= 2 else None
    at_chance = chance is not None and ta < CHANCE_FACTOR * chance
    if at_chance:
        evidence.append(
            f"train_acc ended at {ta:.1%} (epoch {e_end}), near chance "
            f"({chance:.1%} for {hist.num_classes} classes)"
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
            f"a value), then train longer (train.epochs up) or use {hist.wider}"
        )
    else:
        advice = (
            f"{hist.wider}, longer training (train.epochs up), a higher optim.lr, and less "
            f"regularisation (lower optim.weight_decay, {hist.dropout}, train.label_smoothing, "
            "lighter augment.train)"
        )
    return _finding("underfitting", _span(first, e_end), "; ".join(evidence), advice)


def _lr_too_small(hist: _History) -> Finding | None:
    if hist.status not in ("completed", "early_stopped"):
        return None
    loss, acc = hist.points("train_loss"), hist.last("train_acc")
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
    peak = _peak_lr(hist)
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
