"""schedule.name -> the learning rate of every param group at every optimizer step.

A group's lr at optimizer step s (0-based; epoch e = s // steps_per_epoch) is

    lr(s) = scale x warm(s) x shape(clock, base)

- base: the group's lr when the Schedule is built (optim.lr x its lr_mult); plateau lowers it.
- warm(s) = min(1, (s + 1) / W), W = round(warmup_epochs x steps_per_epoch) steps; 1 when W = 0.
- Per-step shapes (constant, cosine, linear, onecycle) stretch over the steps after warm-up:
  clock = s - W out of total - W, holding their first value during warm-up. So cosine/linear
  warm up from ~0 to B and then decay (linear + warm-up = the triangular schedule), and
  onecycle ramps 0 -> B/25 and then runs its own cycle.
- Per-epoch shapes (step, multistep, exponential, plateau) read the absolute epoch e, because
  step_size and milestones are epoch numbers the user wrote; warm-up only multiplies them.
- min_lr floors every decaying shape except onecycle (capped at base so a small group never
  rises); 0 reproduces torch's schedulers exactly. scale (the divergence guard's rollback) is
  applied last, so it may take the lr below min_lr.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.config.schema import ScheduleConfig
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.registry import Registry, did_you_mean

# (clock, length, base, floor, cfg) -> lr; clock is a post-warm-up step or an epoch.
ShapeFn = Callable[[int, int, float, float, ScheduleConfig], float]


@dataclass(frozen=True)
class Shape:
    lr: ShapeFn
    per_epoch: bool


SCHEDULES: Registry[Shape] = Registry("schedule", "schedule.name")

THRESHOLD = 1e-4  # plateau: relative improvement that counts, as torch's default
EPS = 1e-8  # plateau: torch skips reductions smaller than this


def gamma(cfg: ScheduleConfig) -> float:
    if cfg.gamma is not None:
        return cfg.gamma
    return 0.95 if cfg.name == "exponential" else 0.1


def _register(name: str, per_epoch: bool) -> Callable[[ShapeFn], ShapeFn]:
    def add(fn: ShapeFn) -> ShapeFn:
        SCHEDULES.register(name)(Shape(fn, per_epoch))
        return fn

    return add


@_register("constant", per_epoch=False)
def constant(t: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """optim.lr throughout."""
    return base


@_register("cosine", per_epoch=False)
def cosine(t: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """Half a cosine from optim.lr down to schedule.min_lr."""
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, n) / n))


@_register("linear", per_epoch=False)
def linear(t: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """A straight line from optim.lr down to schedule.min_lr."""
    return base + (floor - base) * min(t, n) / n


def _onecycle_phase(t: int, n: int, cfg: ScheduleConfig) -> tuple[float, bool]:
    """How far step t is into its phase of the cycle (0..1), and whether it is the rising one
    (torch.optim.lr_scheduler.OneCycleLR's two phases)."""
    peak_end = cfg.pct_start * n - 1.0
    t = min(t, n - 1)
    lo, hi, rising = (0.0, peak_end, True) if t <= peak_end else (peak_end, n - 1.0, False)
    return ((t - lo) / (hi - lo) if hi > lo else 1.0), rising


def _cos(a: float, b: float, pct: float) -> float:
    """From a to b along half a cosine (torch's _annealing_cos)."""
    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def onecycle_momentum(t: int, n: int, cfg: ScheduleConfig) -> float:
    """The momentum that runs against onecycle's lr: high -> low while it rises, back after."""
    low, high = cfg.momentum_range
    pct, rising = _onecycle_phase(t, n, cfg)
    return _cos(high, low, pct) if rising else _cos(low, high, pct)


@_register("onecycle", per_epoch=False)
def onecycle(t: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """torch's OneCycleLR, from lr/25 up over schedule.pct_start of the steps, then to lr/25e4."""
    # torch.optim.lr_scheduler.OneCycleLR: div_factor 25, final_div_factor 1e4, cos, two phases
    start = base / 25.0
    pct, rising = _onecycle_phase(t, n, cfg)
    return _cos(start, base, pct) if rising else _cos(base, start / 1e4, pct)


@_register("step", per_epoch=True)
def step(e: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """optim.lr times schedule.gamma every schedule.step_size epochs."""
    return max(base * gamma(cfg) ** (e // cfg.step_size), floor)


@_register("multistep", per_epoch=True)
def multistep(e: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """optim.lr times schedule.gamma after each of schedule.milestones (epochs)."""
    return max(base * gamma(cfg) ** bisect.bisect_right(cfg.milestones, e), floor)


@_register("exponential", per_epoch=True)
def exponential(e: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """optim.lr times schedule.gamma every epoch."""
    return max(base * gamma(cfg) ** e, floor)


@_register("plateau", per_epoch=True)
def plateau(e: int, n: int, base: float, floor: float, cfg: ScheduleConfig) -> float:
    """optim.lr times schedule.gamma when schedule.monitor stalls for schedule.patience epochs."""
    return base  # the Schedule lowers base itself in epoch_end


class Schedule:
    """Sets every param group's lr each optimizer step; the base lr of a group is its "lr" when
    the Schedule is built (optim.lr x the group's lr_mult)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: ScheduleConfig,
        steps_per_epoch: int,
        epochs: int,
    ):
        self.shape = SCHEDULES.get(cfg.name)
        self.optimizer, self.cfg = optimizer, cfg
        self.steps_per_epoch, self.epochs = max(steps_per_epoch, 1), epochs
        self.total = self.steps_per_epoch * epochs
        self.warmup = min(round(cfg.warmup_epochs * self.steps_per_epoch), self.total)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.levels = list(self.base_lrs)  # base after plateau's reductions
        self.steps = 0
        self.factor = 1.0  # product of scale() calls
        self.best: float | None = None  # plateau: best monitored value; None: none seen yet
        self.bad_epochs = 0
        self._apply()

    def _apply(self) -> None:
        s = self.steps
        warm = min(1.0, (s + 1) / self.warmup) if self.warmup else 1.0
        if self.shape.per_epoch:
            clock, length = s // self.steps_per_epoch, self.epochs
        else:
            clock, length = max(s - self.warmup, 0), max(self.total - self.warmup, 1)
        for group, base, level in zip(
            self.optimizer.param_groups, self.base_lrs, self.levels, strict=True
        ):
            floor = min(self.cfg.min_lr, base)
            group["lr"] = self.factor * warm * self.shape.lr(clock, length, level, floor, self.cfg)
        if self.shape.lr is onecycle and self.cfg.cycle_momentum:
            _set_momentum(self.optimizer, onecycle_momentum(clock, length, self.cfg))

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def epoch_end(self, metrics: dict[str, float]) -> None:
        if self.shape.lr is not plateau:
            return
        if self.cfg.monitor not in metrics:
            names = sorted(metrics)
            raise ConfigError(
                f"schedule.monitor: no per-epoch metric {self.cfg.monitor!r}"
                f"{did_you_mean(self.cfg.monitor, names)} (available: {', '.join(names)})"
            )
        value = float(metrics[self.cfg.monitor])
        if self._better(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.cfg.patience:
            self.bad_epochs = 0
            for i, (level, base) in enumerate(zip(self.levels, self.base_lrs, strict=True)):
                lowered = max(level * gamma(self.cfg), min(self.cfg.min_lr, base))
                if level - lowered > EPS:
                    self.levels[i] = lowered
            self._apply()

    def _better(self, value: float) -> bool:
        # torch's threshold_mode "rel"; a non-finite first value sets no best (torch's would)
        if self.best is None:
            return math.isfinite(value)
        if self.cfg.mode == "min":
            return value < self.best * (1.0 - THRESHOLD)
        return value > self.best * (1.0 + THRESHOLD)

    def scale(self, factor: float) -> None:
        self.factor *= factor
        self._apply()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        # base_lrs travel along so loading also works after optimizer.load_state_dict has
        # overwritten the groups' lr before this Schedule was built
        return {
            "steps": self.steps,
            "scale": self.factor,
            "base_lrs": list(self.base_lrs),
            "levels": list(self.levels),
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys, groups = set(self.state_dict()), len(self.optimizer.param_groups)
        if set(state) != keys:  # e.g. a torch LRScheduler's state from before issue 6
            raise CheckpointError(
                f"schedule state has keys {sorted(state)}, expected {sorted(keys)}"
            )
        if not len(state["base_lrs"]) == len(state["levels"]) == groups:
            raise CheckpointError(
                f"schedule state has {len(state['base_lrs'])} param groups, optimizer {groups}"
            )
        self.steps, self.factor = int(state["steps"]), float(state["scale"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.levels = [float(x) for x in state["levels"]]
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()


def _set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Into each group that has one: momentum (SGD, RMSprop, Muon) or beta1 (Adam, AdamW,
    LAMB, Lion), as torch's OneCycleLR sets them; groups with neither are left alone."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        elif "momentum" in group:
            group["momentum"] = momentum


def build(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> Schedule:
    return Schedule(optimizer, cfg, steps_per_epoch, epochs)
