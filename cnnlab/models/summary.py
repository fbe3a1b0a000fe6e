"""Per-layer table of a model: output shape and parameters, with totals (written to model.txt)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str  # qualified module name, e.g. "3.0" for a conv inside the fourth block
    kind: str  # class name
    output_shape: tuple[int, ...]  # per image, without the batch dimension
    params: int


@dataclass(frozen=True)
class ModelSummary:
    rows: list[LayerRow]
    input_shape: tuple[int, int, int]
    total_params: int
    trainable_params: int
    # float32 bytes of every leaf layer's output for one image: what the forward pass keeps.
    activation_bytes: int

    def table(self) -> str:
        header = ("layer", "type", "output shape", "params")
        body = [
            (r.name, r.kind, "×".join(map(str, r.output_shape)), f"{r.params:,}") for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i == 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        rule = "-" * len(line(header))
        mb = 1024**2
        return "\n".join(
            [
                f"input: {'×'.join(map(str, self.input_shape))}",
                rule,
                line(header),
                rule,
                *(line(row) for row in body),
                rule,
                f"total params:      {self.total_params:,}",
                f"trainable params:  {self.trainable_params:,}",
                f"params size:       {self.total_params * 4 / mb:.2f} MB (float32)",
                f"activations:       {self.activation_bytes / mb:.3f} MB per image (forward)",
            ]
        )


def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSummary:
    """Run one zero image (C, H, W) through `model` on its own device and record leaf layers."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def record(mod: nn.Module, _inputs, output, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                rows.append(LayerRow(name, type(mod).__name__, tuple(output.shape[1:]), params))

        hooks.append(module.register_forward_hook(record))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    activations = sum(4 * _numel(r.output_shape) for r in rows)
    return ModelSummary(rows, input_shape, total, trainable, activations)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
