"""optim.name -> torch optimizer over a model's parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from cnnlab.config.schema import OptimConfig
from cnnlab.registry import Registry

Params = Iterable[nn.Parameter]
OPTIMIZERS: Registry[Callable[[Params, OptimConfig], torch.optim.Optimizer]] = Registry(
    "optimizer", "optim.name"
)


@OPTIMIZERS.register("sgd")
def sgd(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


@OPTIMIZERS.register("adam")
def adam(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Params, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(model.parameters(), cfg)
