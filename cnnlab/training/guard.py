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
    baseline: float | None = None  # what the loss jumped above; None for NaN/inf
    baseline_name: str = ""  # "its running median", "a uniform guess (ln K)"

    def finding(self) -> dict[str, str]:
        """An entry of summary.json's diagnosis list."""
        if self.baseline is None:
            what = f"loss became {self.loss} at step {self.step} with lr {self.lr:.3g}"
        else:
            what = (
                f"loss jumped to {self.loss:.4g} at step {self.step} with lr {self.lr:.3g}, "
                f"{self.loss / self.baseline:.3g}x {self.baseline_name} {self.baseline:.4g}"
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
    loss: float,
    step: int,
    lr: float,
    recent: list[float],
    spike_factor: float | None,
    num_classes: int,
) -> None:
    """Raise DivergedError for a non-finite loss, or (with spike_factor) a loss that many times
    a uniform guess's ln(num_classes) or the median of `recent` (the last logged losses, oldest
    first). Otherwise append `loss` to `recent`, keeping the last RECENT.

    The uniform-guess bound catches an lr so absurd that the loss is huge from the first step
    on: BatchNorm can keep it finite, and the median then rises with it."""
    if not math.isfinite(loss):
        raise DivergedError(Divergence(step=step, lr=lr, loss=loss))
    if spike_factor is not None:
        chance = math.log(max(num_classes, 2))
        if loss > spike_factor * chance:
            name = f"the loss of a uniform guess over {num_classes} classes"
            raise DivergedError(Divergence(step, lr, loss, chance, name))
        if len(recent) >= MIN_RECENT:
            median = statistics.median(recent)
            if loss > spike_factor * max(median, MEDIAN_FLOOR):
                raise DivergedError(Divergence(step, lr, loss, median, "its running median"))
    recent.append(loss)
    del recent[:-RECENT]
