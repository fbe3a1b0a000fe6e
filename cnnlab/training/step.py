"""The training step and the evaluation pass: what every part of cnnlab that runs a model calls
(the loop, the lr finder, the feature cache, `eval`, `robustness`).

A training step is one optimizer update over one or more micro-batches (train.accumulate), in
the order nanoGPT's loop reads: zero_grad, forward, loss, backward (per micro-batch), clip, step,
schedule, EMA. Nothing in it waits for the device: losses and logits come back as tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.augment.tta import Views
from cnnlab.config.schema import TrainConfig
from cnnlab.data.loader import BatchLoader
from cnnlab.training.distributed import SINGLE, World
from cnnlab.training.ema import EMA


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16: torch.autocast on the device; fp32: nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class TrainParts:
    """Everything a run trains with, built once by training.experiment.build.

    The network has two roles with a module each: `net` is what the training step calls and
    `eval_net` what evaluation calls. They are `model` and `eval_model` (the weights), or wrap
    them: torch.compile, DistributedDataParallel, or a transfer head alone when the frozen
    backbone's features are cached."""

    model: nn.Module  # the weights that train: last.ckpt's "model"
    net: nn.Module  # what the step calls
    eval_model: nn.Module  # the weights evaluation uses, best.safetensors: the EMA's or model
    eval_net: nn.Module  # what evaluation calls
    optimizer: torch.optim.Optimizer
    scheduler: Any  # training.schedule.Schedule (the lr finder's sweep): step() sets the lr
    scaler: torch.amp.GradScaler
    train_loader: BatchLoader
    val_loader: BatchLoader
    cfg: TrainConfig  # precision, grad_clip, label_smoothing, accumulate
    views: Views | None = None  # test-time views (augment.tta) for every evaluation
    ema: EMA | None = None
    # Called with the epoch's number before each epoch starts or resumes (a transfer run's
    # backbone unfreezing); a pure function of the epoch, so resuming needs no state for it.
    before_epoch: Callable[[int], None] | None = None
    # The processes training together (training.distributed); their loaders hold a share of
    # the images each, and evaluate() sums their scores.
    world: World = SINGLE

    def __post_init__(self) -> None:
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing)

    def step(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], size: int
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One optimizer update over the next `size` micro-batches of `batches` (x: (B, C, H,
        W), y: (B,) labels or (B, K) mixed targets); returns each micro-batch's (mean loss,
        logits, targets), detached, for the caller's running sums."""
        self.optimizer.zero_grad(set_to_none=True)
        seen = []
        for i, (x, y) in zip(range(size), batches, strict=False):  # never takes one more
            with self._gradient_sync(last=i == size - 1):
                with autocast(x.device, self.cfg.precision):
                    logits = self.net(x)
                loss = self.loss_fn(logits.float(), y)
                # the mean over the whole step's images when micro-batches are accumulated
                self.scaler.scale(loss / size if size > 1 else loss).backward()
            seen.append((loss.detach(), logits.detach(), y))
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        return seen

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DistributedDataParallel all-reduces gradients in backward; of an accumulated step's
        micro-batches only the last needs it (no_sync on the others, as torch's docs advise)."""
        no_sync = getattr(self.net, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

    def evaluate(self, loader: BatchLoader) -> Scores:
        """eval_net's scores on every image of `loader`, with the run's test-time views; with
        several processes, on every image of every rank's share, each counted once."""
        scores = score(self.eval_net, loader, self.cfg.precision, self.views, loader.device)
        if self.world.size == 1:
            return scores
        sums = self.world.sum(scores.loss_sum, scores.correct, scores.count)
        return Scores(*(torch.tensor(v, dtype=torch.float64) for v in sums))


@torch.inference_mode()  # as a decorator, torch enters the mode around each next() only
def logits(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    precision: str,
    views: Views | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation pass: (float32 logits (B, K), labels (B,)) per batch of `batches`, with
    `net` in eval mode (and back afterwards); with test-time `views`, the logits averaged over
    the views. Training's validation and test scores and every analysis command run this, so
    their numbers agree."""
    was_training = net.training
    net.eval()
    try:
        for x, y in batches:
            with autocast(x.device, precision):
                if views is None:
                    out = net(x)
                else:
                    out = torch.stack([net(v).float() for v in views(x)]).mean(dim=0)
            yield out.float(), y
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class Scores:
    """Sums over an evaluation pass, on the device so that adding to them never waits for it
    and ranks can all-reduce them: (loss sum, correct predictions, images)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    count: torch.Tensor

    @property
    def loss(self) -> float:
        """Mean cross-entropy."""
        return (self.loss_sum / self.count).item()

    @property
    def accuracy(self) -> float:
        return (self.correct / self.count).item()


def score(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    precision: str,
    views: Views | None = None,
    device: torch.device | None = None,
) -> Scores:
    """Summed cross-entropy and correct predictions over every image of `batches`."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = torch.zeros((), device=device, dtype=torch.int64)
    for out, y in logits(net, batches, precision, views):
        loss_sum += F.cross_entropy(out, y, reduction="sum")
        correct += (out.argmax(dim=1) == y).sum()
        count += len(y)
    return Scores(loss_sum, correct, count)
