"""Divergence guard: notices a loss that stops being a finite number or jumps far above its
recent level, and says what to try.

The loop checks the mean loss of each logging window (LOG_EVERY steps), not single batches: one
hard batch of 8 images can sit 10x above the median without anything being wrong.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

RECENT = 20  # logged losses the running median covers
MIN_RECENT = 5  # no spike verdicts before this many: the first losses fall fast
# Medians below this count as this: near-zero losses (a memorised training set) make any
# ordinary wobble a large multiple of the median.
MEDIAN_FLOOR = 0.05


@dataclass(frozen=True)
class Divergence:
    step: int
    lr: float
    loss: float
    median: float | None = None  # set for a spike, None for NaN/inf

    def finding(self) -> dict[str, str]:
        """An entry of summary.json's diagnosis list."""
        if self.median is None:
            what = f"loss became {self.loss} at step {self.step} with lr {self.lr:.3g}"
        else:
            what = (
                f"loss jumped to {self.loss:.4g} at step {self.step} with lr {self.lr:.3g}, "
                f"{self.loss / self.median:.1f}x its running median {self.median:.4g}"
            )
        return {
            "kind": "diverged",
            "step": str(self.step),
            "message": what,
            "advice": (
                f"try optim.lr <= {self.lr / 10:.3g}, a warm-up (schedule.warmup_epochs=1), "
                "gradient clipping (train.grad_clip=1.0), or train.on_divergence=rollback"
            ),
        }


class DivergedError(Exception):
    """Raised by the loop; the run ends with status `diverged` and exit code 3."""

    def __init__(self, divergence: Divergence):
        super().__init__(divergence.finding()["message"])
        self.divergence = divergence


def check_loss(
    loss: float, step: int, lr: float, recent: list[float], spike_factor: float | None
) -> None:
    """Raise DivergedError for a non-finite loss or a spike over `recent` (the last logged
    losses, oldest first); otherwise append `loss` to `recent`, keeping the last RECENT."""
    if not math.isfinite(loss):
        raise DivergedError(Divergence(step=step, lr=lr, loss=loss))
    if spike_factor is not None and len(recent) >= MIN_RECENT:
        median = statistics.median(recent)
        if loss > spike_factor * max(median, MEDIAN_FLOOR):
            raise DivergedError(Divergence(step=step, lr=lr, loss=loss, median=median))
    recent.append(loss)
    del recent[:-RECENT]
