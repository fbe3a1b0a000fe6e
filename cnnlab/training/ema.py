"""Exponential moving average of a model's weights (train.ema), for evaluation.

Not torch.optim.swa_utils.AveragedModel: its update compares a tensor counter to zero twice,
each a host-device sync, and the trainer keeps the step free of syncs. Here an update is two
foreach kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._pairs = [
            (mine, theirs)
            for mine, theirs in zip(self._tensors(self.module), self._tensors(model), strict=True)
        ]

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [*model.parameters(), *model.buffers()]

    @torch.no_grad()
    def update(self) -> None:
        """ema <- decay * ema + (1 - decay) * weights; integer buffers (BatchNorm's counter)
        are copied."""
        floats = [(m, t) for m, t in self._pairs if m.is_floating_point()]
        if floats:
            mine, theirs = zip(*floats, strict=True)
            torch._foreach_lerp_(list(mine), [t.detach() for t in theirs], 1.0 - self.decay)
        for m, t in self._pairs:
            if not m.is_floating_point():
                m.copy_(t)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
