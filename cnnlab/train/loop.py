"""The training loop: epochs of explicit steps, evaluation, early stopping, checkpoint calls.

Outward hooks are plain callables: log_step(dict) at logging points, log_epoch(dict) once per
epoch (the per-epoch metrics a sweep pruner or a tracker consumes), checkpoint(state, improved).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.augment.tta import Views
from cnnlab.config.schema import EarlyStoppingConfig, TrainConfig
from cnnlab.data.loader import DeviceLoader
from cnnlab.train.guard import check_loss

LOG_EVERY = 10  # steps between reads of the loss: each read waits for the device


@dataclass
class TrainParts:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    views: Views | None = None  # test-time views (augment.tta) for every evaluation


@dataclass
class FitState:
    """Where a run stands after its last completed epoch; all of it goes into last.ckpt."""

    epoch: int = 0
    step: int = 0
    best: float | None = None  # best value of early_stopping.monitor so far
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since `best` last improved
    train_seconds: float = 0.0  # inside training steps only
    images_seen: int = 0
    status: str = "running"
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def fit(
    parts: TrainParts,
    cfg: TrainConfig,
    state: FitState,
    *,
    log_step: Callable[[dict[str, Any]], None],
    log_epoch: Callable[[dict[str, Any]], None],
    checkpoint: Callable[[FitState, bool], None],
) -> FitState:
    """Train epochs state.epoch+1 .. cfg.epochs; raises DivergedError when the loss blows up."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    rule = cfg.early_stopping
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc, lr = train_epoch(parts, cfg, loss_fn, state, epoch, log_step)
        val_loss, val_acc = evaluate(parts.model, parts.val_loader, cfg.precision, parts.views)
        metrics = {
            "epoch": epoch,
            "step": state.step,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": time.perf_counter() - start,
        }
        state.epoch = epoch
        state.history.append(metrics)
        improved = state.improve(metrics[rule.monitor], rule)
        log_epoch(metrics)
        checkpoint(state, improved)
        if rule.patience is not None and state.bad_epochs >= rule.patience:
            state.status = "early_stopped"
            return state
    state.status = "completed"
    return state


def train_epoch(
    parts: TrainParts,
    cfg: TrainConfig,
    loss_fn: nn.Module,
    state: FitState,
    epoch: int,
    log_step: Callable[[dict[str, Any]], None],
) -> tuple[float, float, float]:
    """One pass over the training loader -> (mean loss, accuracy, lr of the last step)."""
    model, optimizer, scaler = parts.model, parts.optimizer, parts.scaler
    device = parts.train_loader.device
    model.train()
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, batches, start = 0, len(parts.train_loader), time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    for i, (x, y) in enumerate(parts.train_loader):  # x: (B, C, H, W) float, y: (B,) int64
        lr = optimizer.param_groups[0]["lr"]
        with autocast(device, cfg.precision):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        parts.scheduler.step()
        state.step += 1
        loss_sum += loss.detach() * len(y)
        # Mixed targets (B, K): a prediction counts as right when it names the larger share.
        labels = y.argmax(dim=1) if y.ndim == 2 else y
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(y)
        if (i + 1) % LOG_EVERY == 0 or i + 1 == batches:
            value = loss.item()  # logging point: the one device sync every LOG_EVERY steps
            check_loss(value, state.step, lr)
            elapsed = time.perf_counter() - start
            log_step(
                {
                    "epoch": epoch,
                    "step": state.step,
                    "batch": i + 1,
                    "batches": batches,
                    "loss": value,
                    "lr": lr,
                    "images_per_second": seen / max(elapsed, 1e-9),
                }
            )
    state.train_seconds += time.perf_counter() - start
    state.images_seen += seen
    mean_loss = (loss_sum / seen).item()
    check_loss(mean_loss, state.step, lr)
    return mean_loss, (correct / seen).item(), lr


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DeviceLoader, precision: str, views: Views | None = None
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over every image of `loader`; with test-time `views`,
    of the logits averaged over the views."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.int64)
    for x, y in loader:
        with autocast(loader.device, precision):
            if views is None:
                logits = model(x)
            else:
                logits = torch.stack([model(v).float() for v in views(x)]).mean(dim=0)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(loader.labels)
    return (loss_sum / n).item(), (correct / n).item()
