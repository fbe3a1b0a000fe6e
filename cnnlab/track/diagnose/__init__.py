"""Diagnosis of a run from its per-epoch history: rules that name overfitting, instability,
divergence, underfitting, a learning rate too small or too large, and early stopping that cut a
run still improving, each with the epochs, the evidence in numbers, and which config key to
change in which direction.

A finding is an entry of summary.json's diagnosis list, shaped like the divergence guard's
(cnnlab/training/guard.py) plus the epochs it concerns: {"kind", "epochs", "message", "advice"},
all strings. Findings come most severe first (SEVERITY).

The rules live by what they judge: stability (non-finite values, spikes and collapses, a
learning rate too large), fitting (overfitting, underfitting, a learning rate too small) and
progress (early stopping that cut a run still improving, a run still improving at its end), each
with its thresholds; history holds the view over the metric rows they share. The thresholds are
conservative on purpose: a healthy run (loss falling with some noise, a plateau at the end, a
train/val gap of a few points) must produce no finding, and no rule but the non-finite check
judges fewer than MIN_EPOCHS epochs, whose curves are mostly the fast fall of the start. A
finished run too short for some rules gets a "too_short" finding that names them and the epochs
they need (EPOCHS_NEEDED): an empty diagnosis means the rules looked and found nothing. The
history is epoch-level (means over an epoch), so these rules see trends the step-level guard
cannot and miss single-batch events it catches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cnnlab.track.diagnose.fitting import (
    SLOW_MIN_EPOCHS,
    _lr_too_small,
    _overfitting,
    _underfitting,
)
from cnnlab.track.diagnose.history import MIN_EPOCHS, Finding, _finding, _History, _span
from cnnlab.track.diagnose.progress import TREND_MIN_POINTS, _still_improving, _stopped_early
from cnnlab.track.diagnose.stability import _instability, _lr_too_large, _non_finite

__all__ = ["EPOCHS_NEEDED", "KEYS", "MIN_EPOCHS", "RULES", "SEVERITY", "Finding", "diagnose"]

SEVERITY = (
    "diverged",
    "instability",
    "lr_too_large",
    "overfitting",
    "underfitting",
    "lr_too_small",
    "stopped_early",
    "still_improving",
    "too_short",
)

KEYS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc")

RULES: tuple[Callable[[_History], Finding | None], ...] = (
    _instability,
    _lr_too_large,
    _overfitting,
    _underfitting,
    _lr_too_small,
    _stopped_early,
    _still_improving,
)


# The fewest epochs each rule judges, and the statuses it judges (None: any). stopped_early is
# left out: it needs 2 x its trend window, and an early stop is short by the user's choice.
EPOCHS_NEEDED: dict[str, tuple[int, tuple[str, ...] | None]] = {
    "instability": (MIN_EPOCHS, None),
    "lr_too_large": (MIN_EPOCHS, None),
    "overfitting": (MIN_EPOCHS, None),
    "underfitting": (MIN_EPOCHS, ("completed", "early_stopped")),
    "lr_too_small": (SLOW_MIN_EPOCHS, ("completed", "early_stopped")),
    "still_improving": (TREND_MIN_POINTS, ("completed",)),
}
# Statuses of a run that ended as planned: a diverged, failed or interrupted run has its reason.
FINISHED = ("completed", "early_stopped", "time_limit")


def diagnose(
    history: Sequence[dict[str, Any]],
    *,
    status: str,
    num_classes: int | None = None,
    early_stopping_patience: int | None = None,
    monitor: str = "val_acc",
    mode: str = "max",
    transfer: bool = False,
) -> list[Finding]:
    """Findings for a run's per-epoch history (metrics.jsonl's rows), most severe first.

    `status` is summary.json's; `monitor`/`mode` are train.early_stopping's (they also pick
    best.safetensors); `transfer`: a head on a backbone, whose advice names transfer.* keys.
    Missing keys, None and non-numbers are skipped; epochs from the first non-finite loss or
    accuracy on are left out after a "diverged" finding about it."""
    hist = _History.of(history, tuple(dict.fromkeys((*KEYS, monitor))))
    hist.status, hist.num_classes, hist.patience = status, num_classes, early_stopping_patience
    hist.monitor, hist.mode = monitor, "min" if mode == "min" else "max"
    hist.transfer = transfer
    if not hist.points(monitor):  # an unknown monitor: judge val_acc instead
        hist.monitor, hist.mode = "val_acc", "max"
    findings = []
    bad = _non_finite(hist)
    if bad is not None:
        findings.append(bad)
    for rule in (*RULES, _too_short):
        found = rule(hist)
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


def _too_short(hist: _History) -> Finding | None:
    """Which rules a finished run of too few epochs could not judge, and how many it needs."""
    n = len(hist)
    missed: dict[int, list[str]] = {}
    for kind, (need, statuses) in EPOCHS_NEEDED.items():
        if n < need and (statuses is None or hist.status in statuses):
            missed.setdefault(need, []).append(kind)
    if n == 0 or hist.status not in FINISHED or not missed:
        return None
    (first, kinds), *more = sorted(missed.items())
    verb = "needs" if len(kinds) == 1 else "need"
    parts = [f"{_and(kinds)} {verb} {first} epochs"]
    parts += [f"{_and(kinds)} {need}" for need, kinds in more]
    checked = "only non-finite values were checked; " if n < MIN_EPOCHS else ""
    full = max(missed)
    advice = {
        "early_stopped": "a larger train.early_stopping.patience lets a run reach",
        "time_limit": "a larger train.max_minutes lets a run reach",
    }.get(hist.status, f"train.epochs={full} or more gives")
    return _finding(
        "too_short",
        _span(hist.epochs[0], hist.epochs[-1]),
        f"only {n} epoch{'s' if n > 1 else ''} ({hist.status}): {checked}{', '.join(parts)}",
        f"{advice} the {full} epochs a full diagnosis needs",
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
