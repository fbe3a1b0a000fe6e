"""model.init: weight initialisation of every conv and linear layer."""

from __future__ import annotations

from torch import nn


def initialize(model: nn.Module, scheme: str) -> None:
    if scheme == "default":  # PyTorch's own per-layer defaults
        return
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if scheme == "kaiming_normal":
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, mode="fan_out", nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_uniform_(module.weight)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")  # the schema's Literal prevents it
        if module.bias is not None:
            nn.init.zeros_(module.bias)
