"""Divergence guard: notices a loss that is no longer a finite number and says what to try."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Divergence:
    step: int
    lr: float
    loss: float

    def finding(self) -> dict[str, str]:
        """An entry of summary.json's diagnosis list."""
        return {
            "kind": "diverged",
            "message": f"loss became {self.loss} at step {self.step} with lr {self.lr:.3g}",
            "advice": (
                f"try lr <= {self.lr / 10:.3g}, a warm-up (schedule.warmup_epochs=1), "
                "or gradient clipping (train.grad_clip=1.0)"
            ),
        }


class DivergedError(Exception):
    """Raised by the loop; the run ends with status `diverged` and exit code 3."""

    def __init__(self, divergence: Divergence):
        super().__init__(divergence.finding()["message"])
        self.divergence = divergence


def check_loss(loss: float, step: int, lr: float) -> None:
    if not math.isfinite(loss):
        raise DivergedError(Divergence(step=step, lr=lr, loss=loss))
