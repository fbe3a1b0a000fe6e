"""Per-layer table of a model (written to model.txt): output shape, parameters, activation
memory, MACs and receptive field, with totals.

Counting conventions, all per image:
- activation memory: float32 bytes of the layer's output (4 × elements).
- MACs (multiply-accumulates; FLOPs = 2 × MACs): Conv2d out_elements × (C_in / groups) × kH × kW
  (depthwise: groups = C_in, so k² per output); Linear in_features × out_features; BatchNorm one
  per output element (in eval it is x·scale + shift; 0 once folded into the conv before it).
  Bias additions, activations, pooling, dropout and elementwise adds count 0: they are not
  multiply-accumulates and are cheap next to convolutions.
- forward + backward activations ≈ 2 × forward: the backward pass holds one gradient the size
  of each saved output. It ignores what autograd saves besides outputs (a layer's input,
  dropout masks) and what in-place ops free, so it is an estimate, not a measurement.
- receptive field: see cnnlab.models.receptive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.receptive import Fields, receptive_fields


@dataclass(frozen=True)
class LayerRow:
    name: str  # qualified module name, e.g. "3.0" for a conv inside the fourth block
    kind: str  # class name
    output_shape: tuple[int, ...]  # per image, without the batch dimension
    params: int
    activation_bytes: int  # float32 bytes of the output, per image
    macs: int  # multiply-accumulates per image
    receptive_field: Fields | None  # (H axis, W axis) of one output unit; None: unknown

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class ModelSummary:
    rows: list[LayerRow]
    input_shape: tuple[int, int, int]
    total_params: int
    trainable_params: int
    param_bytes: int  # as stored (float32: 4 per parameter)
    # float32 bytes of every leaf layer's output for one image: what the forward pass keeps.
    activation_bytes: int
    macs: int  # per image, sum of the rows
    receptive_field_method: str  # "torch.fx graph", or the fallback and why

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def train_activation_bytes(self) -> int:
        """Forward outputs plus their gradients in the backward pass (≈ 2 × forward)."""
        return 2 * self.activation_bytes

    @property
    def receptive_field(self) -> Fields | None:
        """Field of the last layer's output unit (global for a classifier)."""
        return self.rows[-1].receptive_field if self.rows else None

    @property
    def local_receptive_field(self) -> Fields | None:
        """Field of the last layer still on a spatial grid: what the conv stack sees before
        global pooling (435 px at jump 32 for resnet18)."""
        local = [r.receptive_field for r in self.rows if r.receptive_field is not None]
        local = [f for f in local if not f[0].whole]
        return local[-1] if local else None

    def table(self) -> str:
        header = (
            "#",  # what transfer.layer takes besides the name
            "layer",
            "type",
            "output shape",
            "params",
            "act mem",
            "MACs",
            "RF size/jump/start",
        )
        body = [
            (
                str(i),
                r.name,
                r.kind,
                "×".join(map(str, r.output_shape)),
                f"{r.params:,}",
                _human_bytes(r.activation_bytes),
                f"{r.macs:,}",
                _rf_cell(r.receptive_field),
            )
            for i, r in enumerate(self.rows)
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if i in (0, 4, 5, 6) else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        rule = "-" * len(line(header))
        return "\n".join(
            [
                f"input: {'×'.join(map(str, self.input_shape))}",
                rule,
                line(header),
                rule,
                *(line(row) for row in body),
                rule,
                *self._totals(),
            ]
        )

    def _totals(self) -> list[str]:
        mb = 1024**2
        return [
            f"total params:      {self.total_params:,}",
            f"trainable params:  {self.trainable_params:,}",
            f"params size:       {self.param_bytes / mb:.2f} MB",
            f"activations:       {self.activation_bytes / mb:.3f} MB per image (forward)",
            f"  with backward:   {self.train_activation_bytes / mb:.3f} MB per image"
            " (≈ 2 × forward: one gradient per output)",
            f"MACs:              {self.macs:,} per image (FLOPs = 2 × MACs = {self.flops:,})",
            f"receptive field:   {_rf_cell(self.receptive_field)}"
            f" (last spatial layer: {_rf_words(self.local_receptive_field)})",
            f"  computed by:     {self.receptive_field_method}",
        ]


def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSummary:
    """Run one zero image (C, H, W) through `model` on its own device and record leaf layers."""
    calls: list[tuple[str, nn.Module, tuple[int, ...], int]] = []  # name, module, shape, MACs
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def record(mod: nn.Module, inputs, output, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                calls.append((name, mod, tuple(output.shape[1:]), _macs(mod, inputs, output)))

        hooks.append(module.register_forward_hook(record))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()  # BatchNorm statistics untouched; fx traces the eval-mode forward too
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
        fields, method = receptive_fields(model, [c[:2] for c in calls], input_shape[1:])
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    rows = [
        LayerRow(name, type(mod).__name__, shape, _own_params(mod), 4 * _numel(shape), macs, field)
        for (name, mod, shape, macs), field in zip(calls, fields, strict=True)
    ]
    return ModelSummary(
        rows=rows,
        input_shape=input_shape,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        activation_bytes=sum(r.activation_bytes for r in rows),
        macs=sum(r.macs for r in rows),
        receptive_field_method=method,
    )


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-accumulates of one call, per image (batch of 1); conventions in the docstring."""
    out = output[0].numel()  # elements of one image's output
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Each input element is spread over C_out / groups × kernel outputs.
        kernel = _numel(module.kernel_size)
        return inputs[0][0].numel() * module.out_channels // module.groups * kernel
    if isinstance(module, nn.modules.conv._ConvNd):
        # Each output element is a dot product over (C_in / groups) × kernel inputs.
        return out * module.in_channels // module.groups * _numel(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out * module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return out
    return 0


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _rf_cell(fields: Fields | None) -> str:
    """'size/jump/start' of the H axis, '… × …' (H × W) when the axes differ, '?' unknown."""
    if fields is None:
        return "?"
    h, w = fields
    return str(h) if str(h) == str(w) else f"{h} × {w}"


def _rf_words(fields: Fields | None) -> str:
    if fields is None:
        return "none"
    h, w = fields
    if h == w:
        return f"{h.size} px, jump {h.jump}, start {h.start:g}"
    return f"H {h} × W {w} (size/jump/start)"


def _human_bytes(n: int) -> str:
    if n >= 1024**2:
        return f"{n / 1024**2:.2f} MB"
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
