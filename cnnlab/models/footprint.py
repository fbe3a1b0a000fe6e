"""How much memory a model will take to train, counted before any of it is allocated.

The network is built on PyTorch's meta device (tensors with a shape and no storage) and a meta
batch is run through it, so `model.width=100000000` or `linear(100000000000)` is measured in
microseconds instead of crashing the allocator. The count is a floor, not a forecast:

- parameters: float32 weights and their gradients (8 bytes per parameter); optimizer state
  and EMA copies come on top;
- activations: the input batch plus every leaf layer's output (what the forward pass keeps
  for backward), as models.summary counts them per image, times the batch size; 4 bytes
  each, 2 under bf16/fp16 autocast (some layers' outputs stay float32 there: still a floor).

A run whose floor exceeds the memory there is cannot train, so it is refused before its run
directory exists (training.device.check_fits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Footprint:
    params: int  # parameters of the network
    param_bytes: int  # weights + gradients
    activation_bytes: int  # one training batch's input and leaf outputs
    batch_size: int

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes


def measure(
    build: Callable[[], nn.Module],
    input_shape: tuple[int, int, int],
    batch: int,
    value_bytes: int = 4,
) -> Footprint | None:
    """The floor above for the network `build()` makes, on (C, H, W) inputs in batches of
    `batch`, activations of `value_bytes` each (2 under bf16/fp16 autocast). None when it
    cannot be built on the meta device (an init that needs real values): the estimate is then
    skipped, never the run."""
    try:
        with torch.device("meta"):
            net = build()
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        return None
    params = sum(p.numel() for p in net.parameters())
    outputs = [0]  # elements of every leaf output, for the whole batch

    def count(module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            outputs[0] += output.numel()

    hooks = [
        m.register_forward_hook(count) for m in net.modules() if next(m.children(), None) is None
    ]
    try:
        with torch.no_grad():
            net(torch.empty(batch, *input_shape, device="meta"))
        activations = value_bytes * (outputs[0] + batch * _numel(input_shape))
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        # a layer meta cannot run: the input batch alone
        activations = value_bytes * batch * _numel(input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return Footprint(params, 8 * params, activations, batch)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
