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
judges fewer than MIN_EPOCHS epochs, whose curves are mostly the fast fall of the start. The
history is epoch-level (means over an epoch), so these rules see trends the step-level guard
cannot and miss single-batch events it catches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cnnlab.track.diagnose.fitting import _lr_too_small, _overfitting, _underfitting
from cnnlab.track.diagnose.history import MIN_EPOCHS, Finding, _Run
from cnnlab.track.diagnose.progress import _still_improving, _stopped_early
from cnnlab.track.diagnose.stability import _instability, _lr_too_large, _non_finite

__all__ = ["KEYS", "MIN_EPOCHS", "RULES", "SEVERITY", "Finding", "diagnose"]

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

RULES: tuple[Callable[[_Run], Finding | None], ...] = (
    _instability,
    _lr_too_large,
    _overfitting,
    _underfitting,
    _lr_too_small,
    _stopped_early,
    _still_improving,
)


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
    run = _Run.of(history, tuple(dict.fromkeys((*KEYS, monitor))))
    run.status, run.num_classes, run.patience = status, num_classes, early_stopping_patience
    run.monitor, run.mode = monitor, "min" if mode == "min" else "max"
    run.transfer = transfer
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
