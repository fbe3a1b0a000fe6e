"""schedule.name -> learning-rate multiplier per optimizer step, with optional linear warm-up.

Every schedule is stepped once per batch, so warm-up and decay are smooth even over few epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cnnlab.config.schema import ScheduleConfig
from cnnlab.registry import Registry

# shape(progress, floor) -> multiplier of optim.lr; progress in [0, 1] over the post-warm-up
# steps, floor = schedule.min_lr / optim.lr.
Shape = Callable[[float, float], float]
SCHEDULES: Registry[Shape] = Registry("schedule", "schedule.name")


@SCHEDULES.register("constant")
def constant(progress: float, floor: float) -> float:
    return 1.0


@SCHEDULES.register("cosine")
def cosine(progress: float, floor: float) -> float:
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def multiplier(cfg: ScheduleConfig, lr: float, steps_per_epoch: int, epochs: int):
    """step (0-based, before the optimizer step) -> multiplier of optim.lr."""
    shape = SCHEDULES.get(cfg.name)
    total = steps_per_epoch * epochs
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total)
    floor = min(cfg.min_lr / lr, 1.0)

    def at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return shape(min((step - warmup) / max(total - warmup, 1), 1.0), floor)

    return at


def build(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    lr: float,
    steps_per_epoch: int,
    epochs: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, multiplier(cfg, lr, steps_per_epoch, epochs)
    )
