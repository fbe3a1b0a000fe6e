"""LR range test (Leslie Smith; fastai's lr_find): train a fresh model for a few hundred steps
while the learning rate grows exponentially, and suggest the rate where the loss falls fastest.

Suggestion rule (`suggest`): take the smoothed loss, drop the first 10% of the recorded points
(the EMA and the fresh weights make them noise), keep the points up to the smoothed minimum (past
it the rate is too high), and pick the point of steepest descent: the most negative
d(smoothed loss)/d(log10 lr) by numpy.gradient. None when fewer than 5 points remain.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.atomic import atomic_path, write_text_atomic
from cnnlab.config import Config
from cnnlab.config.defaults import LR_FIND
from cnnlab.errors import ConfigError
from cnnlab.training import experiment
from cnnlab.training.device import kernel_mode, resolve_device, seed_everything

MIN_POINTS = 5  # fewer points before the minimum than this give no usable slope


@dataclass(frozen=True)
class LrFind:
    lrs: list[float]
    losses: list[float]  # raw per step
    smoothed: list[float]  # bias-corrected exponential moving average of `losses`
    suggested_lr: float | None
    min_loss_lr: float
    stopped_at: int | None  # step where the loss blew up, None when the sweep ran to end_lr

    def to_dict(self) -> dict[str, Any]:
        # A blown-up loss may be inf/NaN, which strict JSON cannot hold: those become null.
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The lr of steepest descent of `smoothed` vs log10(lr) before its minimum (rule above)."""
    loss = np.asarray(smoothed, dtype=float)
    ok = np.isfinite(loss)
    finite = len(loss) if ok.all() else int(np.argmin(ok))  # a blown-up point ends the curve
    if finite == 0:
        return None
    lowest = int(np.argmin(loss[:finite]))
    start = len(loss) // 10
    if lowest + 1 - start < MIN_POINTS:
        return None
    window = slice(start, lowest + 1)
    slope = np.gradient(loss[window], np.log10(np.asarray(lrs, dtype=float)[window]))
    return float(lrs[start + int(np.argmin(slope))])


class Sweep:
    """The range test's schedule: step() sets every group's lr to the next point of the
    exponential sweep (times the group's lr_mult), as training.schedule.Schedule does for a run."""

    def __init__(self, optimizer: torch.optim.Optimizer, start: float, end: float, steps: int):
        self.optimizer, self.start, self.end, self.steps = optimizer, start, end, steps
        self.i = 0
        self._apply()

    @property
    def lr(self) -> float:
        return self.start * (self.end / self.start) ** (self.i / (self.steps - 1))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_mult", 1.0)

    def step(self) -> None:
        self.i += 1
        self._apply()


def find_lr(
    config: Config,
    *,
    start_lr: float = LR_FIND.start_lr,
    end_lr: float = LR_FIND.end_lr,
    steps: int = LR_FIND.steps,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
) -> LrFind:
    _check(start_lr, end_lr, steps)
    device = resolve_device(config.train.device)
    cfg = config.train
    with kernel_mode(cfg.deterministic), torch.enable_grad():
        seed_everything(cfg.seed)
        parts = experiment.build(config, device).parts
        parts.scheduler = sweep = Sweep(parts.optimizer, start_lr, end_lr, steps)
        parts.model.train()
        batches = _endless(parts.train_loader)  # a sweep may be longer than an epoch
        lrs, losses, smoothed, avg, best, stopped_at = [], [], [], 0.0, math.inf, None
        for i in range(steps):
            lr = sweep.lr
            # one training step as the run takes it (accumulated micro-batches included)
            size = cfg.accumulate
            step_losses = [loss for loss, _, _ in parts.step(batches, size)]
            value = (sum(step_losses) / size).item()
            avg = smoothing * avg + (1 - smoothing) * value
            smooth = avg / (1 - smoothing ** (i + 1))  # bias correction: avg starts at 0
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            if not math.isfinite(smooth) or smooth > diverge_factor * best:
                stopped_at = i
                break
            best = min(best, smooth)
    finite = [s if math.isfinite(s) else math.inf for s in smoothed]
    min_loss_lr = lrs[int(np.argmin(finite))]
    return LrFind(lrs, losses, smoothed, suggest(lrs, smoothed), min_loss_lr, stopped_at)


def _endless(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def write(result: LrFind, directory: Path) -> tuple[Path, Path]:
    """lr_find.json and lr_find.png in `directory` (created if needed)."""
    from matplotlib.figure import Figure  # no pyplot: no backend or global figure state

    directory = Path(directory)
    json_path, png_path = directory / "lr_find.json", directory / "lr_find.png"
    write_text_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.25, label="loss")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed")
    shown = [s for s in result.smoothed if math.isfinite(s)]
    if shown:  # the blown-up tail would flatten the useful part of the curve
        low = min(v for v in result.losses if math.isfinite(v))
        ax.set_ylim(low - 0.05 * (max(shown) - low), max(shown) * 1.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    lr = result.suggested_lr
    if lr is not None:
        ax.axvline(lr, color="tab:red", linestyle="--", label="suggested")
    ax.set_title(f"LR range test: suggested lr {lr:.3g}" if lr else "LR range test: no suggestion")
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return json_path, png_path


def _check(start_lr: float, end_lr: float, steps: int) -> None:
    for option, value in (("--start-lr", start_lr), ("--end-lr", end_lr)):
        if not value > 0:
            raise ConfigError(f"{option} = {value!r}: must be > 0")
    if start_lr >= end_lr:
        raise ConfigError(f"--end-lr = {end_lr!r}: must be greater than --start-lr ({start_lr!r})")
    if steps < 10:
        raise ConfigError(f"--steps = {steps!r}: must be at least 10")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["LrFind", "find_lr", "suggest", "write"]
