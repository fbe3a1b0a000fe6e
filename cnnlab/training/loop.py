"""The training loop: epochs of steps (training.step), validation, early stopping, checkpoint
calls.

Outward hooks are plain callables: parts.before_epoch(epoch), log_step(dict) at logging
points, log_epoch(dict) once per epoch (the per-epoch metrics that trackers and a sweep's pruner
consume; a pruner asks the Stopper to stop), checkpoint(state, improved), and restore(state),
which puts the last checkpoint back (the divergence guard's rollback).

With several processes (parts.world) every rank runs this loop over its share of each batch
and takes the same decisions: the guard's loss and the epoch's totals are summed over the
ranks, the metrics row is rank 0's, and a stop is agreed at logging points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from cnnlab.config.schema import EarlyStoppingConfig, TrainConfig
from cnnlab.training.distributed import World
from cnnlab.training.guard import DivergedError, check_loss
from cnnlab.training.step import TrainParts
from cnnlab.training.stop import Stopper

LOG_EVERY = 10  # optimizer steps between reads of the loss: each read waits for the device


@dataclass
class FitState:
    """Where a run stands; all of it goes into last.ckpt."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best: float | None = None  # best value of early_stopping.monitor so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since `best` last improved
    train_seconds: float = 0.0  # inside training steps only
    images_seen: int = 0
    status: str = "running"
    history: list[dict[str, Any]] = field(default_factory=list)
    recent_losses: list[float] = field(default_factory=list)  # the divergence guard's window
    rollbacks: int = 0
    lr_scale: float = 1.0  # product of the rollbacks' halvings
    events: list[dict[str, str]] = field(default_factory=list)  # rollbacks, for the diagnosis
    partial: dict[str, Any] | None = None  # sums of an epoch stopped between two steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, saved: dict[str, Any]) -> None:
        """Become the state saved by to_dict(), in place (the loop holds this object)."""
        for name, value in FitState(**saved).__dict__.items():
            setattr(self, name, value)

    def improve(self, value: float, rule: EarlyStoppingConfig) -> bool:
        """Record this epoch's monitored value; True when it is the best so far."""
        if self.best is None:
            better = True
        elif rule.mode == "max":
            better = value > self.best + rule.min_delta
        else:
            better = value < self.best - rule.min_delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        return better


def fit(
    parts: TrainParts,
    cfg: TrainConfig,
    state: FitState,
    *,
    log_step: Callable[[dict[str, Any]], None],
    log_epoch: Callable[[dict[str, Any]], None],
    checkpoint: Callable[[FitState, bool], None],
    restore: Callable[[FitState], None] | None = None,
    stopper: Stopper | None = None,
) -> FitState:
    """Train until cfg.epochs are done, early stopping, or a stop request; raises DivergedError
    when the loss blows up and rollback is off or used up."""
    rule, world = cfg.early_stopping, parts.world
    stopper = stopper or Stopper()
    while state.epoch < cfg.epochs:
        epoch = state.epoch + 1
        if parts.before_epoch is not None:
            parts.before_epoch(epoch)
        try:
            totals = train_epoch(parts, cfg, state, epoch, log_step, stopper)
        except DivergedError as e:
            if (
                cfg.on_divergence == "stop"
                or restore is None
                or state.rollbacks >= cfg.max_rollbacks
            ):
                raise
            _roll_back(parts, state, restore, e)
            continue
        if totals is None:  # asked to stop between two steps
            state.status = stopper.reason()
            checkpoint(state, False)
            return state
        metrics = world.same(validate(parts, epoch, state.step, totals))
        state.epoch, state.partial = epoch, None
        state.history.append(metrics)
        improved = state.improve(metrics[rule.monitor], rule)
        parts.scheduler.epoch_end(metrics)
        log_epoch(metrics)
        checkpoint(state, improved)
        if rule.patience is not None and state.bad_epochs >= rule.patience:
            state.status = "early_stopped"
            return state
        if stopper.agree(world) is not None:  # Ctrl-C or a pruner: this checkpoint resumes
            state.status = stopper.reason()
            return state
    state.status = "completed"
    return state


def validate(parts: TrainParts, epoch: int, step: int, totals: dict[str, float]) -> dict[str, Any]:
    """The epoch's row of metrics.jsonl: its training totals and the validation scores."""
    eval_start = time.perf_counter()
    parts.world.sync_buffers(*{id(m): m for m in (parts.model, parts.eval_model)}.values())
    val = parts.evaluate(parts.val_loader)
    return {
        "epoch": epoch,
        "step": step,
        "lr": totals["lr"],
        "train_loss": totals["train_loss"],
        "train_acc": totals["train_acc"],
        "val_loss": val.loss,
        "val_acc": val.accuracy,
        "seconds": totals["seconds"] + time.perf_counter() - eval_start,
        "images_per_second": totals["images_per_second"],
    }


def _roll_back(
    parts: TrainParts, state: FitState, restore: Callable[[FitState], None], e: DivergedError
) -> None:
    """Back to the last checkpoint with half the learning rate it had when the loss blew up."""
    rollbacks, lr_scale = state.rollbacks + 1, state.lr_scale * 0.5
    finding = e.divergence.finding()
    events = [
        *state.events,
        {
            "kind": "rollback",
            "step": finding["step"],
            "message": f"{finding['message']}; rolled back to epoch {{epoch}}, lr x{lr_scale:g}",
            "advice": f"next time start from optim.lr <= {e.divergence.lr * 0.5:.3g}",
        },
    ]
    restore(state)
    events[-1]["message"] = events[-1]["message"].format(epoch=state.epoch)
    parts.scheduler.scale(lr_scale / state.lr_scale)
    state.rollbacks, state.lr_scale, state.events = rollbacks, lr_scale, events


@dataclass
class _Sums:
    """Running sums of an epoch, on the device so that adding to them never waits for it."""

    loss: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    window_loss: torch.Tensor | None = None  # since the last logging point
    window_seen: int = 0
    seconds: float = 0.0
    batch: int = 0  # batches done

    @classmethod
    def resume(cls, partial: dict[str, Any] | None, device: torch.device, main: bool) -> _Sums:
        """The sums of a fresh epoch, or of one resumed from `partial`. Of several processes,
        rank 0 (main) carries the saved sums, which hold every rank's; the others add theirs
        from zero."""
        if partial is None or not main:
            zeros = [torch.zeros((), device=device, dtype=d) for d in (None, torch.int64, None)]
            sums = cls(zeros[0], zeros[1], window_loss=zeros[2])  # three tensors, added in place
            if partial is not None:
                sums.batch, sums.seconds = partial["batch"], partial["seconds"]
            return sums
        return cls(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in partial.items()})

    def to_partial(self, world: World) -> dict[str, Any]:
        """What last.ckpt keeps of an epoch stopped mid-way; with several processes the sums
        of every rank (a collective: every rank calls it, rank 0's is saved)."""
        sums = self
        if world.size > 1:
            loss, correct, seen, window_loss, window_seen = world.sum(
                self.loss, self.correct, self.seen, self.window_loss, self.window_seen
            )
            sums = replace(
                self,
                loss=torch.tensor(loss, dtype=torch.float32),
                correct=torch.tensor(int(correct)),
                seen=int(seen),
                window_loss=torch.tensor(window_loss, dtype=torch.float32),
                window_seen=int(window_seen),
            )
        return {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in sums.__dict__.items()}


def train_epoch(
    parts: TrainParts,
    cfg: TrainConfig,
    state: FitState,
    epoch: int,
    log_step: Callable[[dict[str, Any]], None],
    stopper: Stopper,
) -> dict[str, float] | None:
    """The rest of epoch `epoch` -> its train metrics, or None when `stopper` asked to stop
    (state.partial then holds the sums so far; the loader knows its position)."""
    loader, world = parts.train_loader, parts.world
    device, batches, accumulate = loader.device, len(loader), cfg.accumulate
    sums = _Sums.resume(state.partial, device, world.is_main)
    parts.model.train()
    start, lr, seen_before = time.perf_counter(), parts.scheduler.lr, sums.seen
    batch_iter = iter(loader)  # x: (B, C, H, W) float, y: (B,) int64 or (B, K) mixed targets
    while sums.batch < batches:
        # accumulate micro-batches per step; the last group of the epoch may be short
        size = min(accumulate, batches - sums.batch)
        lr = parts.optimizer.param_groups[0]["lr"]
        for loss, logits, y in parts.step(batch_iter, size):
            _add(sums, loss, logits, y)
        sums.batch += size
        state.step += 1
        at_log = state.step % LOG_EVERY == 0 or sums.batch == batches
        if at_log:
            value, seen = _window(sums, world)  # the sync of this window
            check_loss(
                value, state.step, lr, state.recent_losses, cfg.spike_factor, logits.shape[-1]
            )
            sums.window_loss, sums.window_seen = torch.zeros((), device=device), 0
            elapsed = sums.seconds + time.perf_counter() - start
            log_step(
                {
                    "epoch": epoch,
                    "step": state.step,
                    "batch": sums.batch,
                    "batches": batches,
                    "loss": value,
                    "lr": lr,
                    "images_per_second": seen / max(elapsed, 1e-9),
                }
            )
        asked = world.size == 1 or at_log  # several processes agree at logging points only
        if sums.batch < batches and asked and stopper.agree(world) is not None:
            _account(state, sums, start, seen_before, world.size)
            state.partial = sums.to_partial(world)
            return None
    _account(state, sums, start, seen_before, world.size)
    return _totals(sums, world, lr)


def _totals(sums: _Sums, world: World, lr: float) -> dict[str, float]:
    """The epoch's training metrics, over every rank."""
    if world.size == 1:
        seen = sums.seen
        loss, acc = (sums.loss / seen).item(), (sums.correct / seen).item()
    else:
        loss, correct, seen = world.sum(sums.loss, sums.correct, sums.seen)
        loss, acc = loss / seen, correct / seen
    return {
        "lr": lr,
        "train_loss": loss,
        "train_acc": acc,
        "images_per_second": seen / max(sums.seconds, 1e-9),
        "seconds": sums.seconds,
    }


def _window(sums: _Sums, world: World) -> tuple[float, float]:
    """The mean loss since the last logging point, and the images of the epoch so far, over
    every rank."""
    if world.size == 1:
        return (sums.window_loss / sums.window_seen).item(), sums.seen
    loss, count, seen = world.sum(sums.window_loss, sums.window_seen, sums.seen)
    return loss / count, seen


def _add(sums: _Sums, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
    n = len(y)
    sums.loss += loss * n
    sums.window_loss += loss * n
    # Mixed targets (B, K): a prediction counts as right when it names the larger share.
    labels = y.argmax(dim=1) if y.ndim == 2 else y
    sums.correct += (logits.argmax(dim=1) == labels).sum()
    sums.seen += n
    sums.window_seen += n


def _account(state: FitState, sums: _Sums, start: float, seen_before: int, ranks: int) -> None:
    """Add this stretch of training (since `start`, after `seen_before` images of the epoch)
    to the run's totals; every one of `ranks` processes saw as many images as this one."""
    stretch = time.perf_counter() - start
    state.train_seconds += stretch
    state.images_seen += (sums.seen - seen_before) * ranks
    sums.seconds += stretch
