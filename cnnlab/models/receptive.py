"""Receptive fields of every leaf layer, propagated through the model's torch.fx graph.

Per spatial axis a layer's output unit is described by (size, jump, start), the recurrence of
Dumoulin & Visin and Araujo et al. ("Computing receptive fields of CNNs"). For a layer with
kernel k, stride s, padding p (left/top side), dilation d:

    size_out  = size_in + (k - 1) * d * jump_in     # input pixels one unit sees
    jump_out  = jump_in * s                          # input pixels between adjacent units
    start_out = start_in + ((k - 1) / 2 * d - p) * jump_in

`start` is the centre of the first output unit's field in input pixel indices: pixel 0's centre
is 0 (add 0.5 for the continuous convention where pixel 0 spans [0, 1)), and a negative start
means the field reaches into the padding. The input itself is (1, 1, 0).

Branches (a residual `x + f(x)`, `torch.cat`, an SE gate `x * g`) are why a chain of leaf
layers is not enough: the graph says which layers feed which. Elementwise ops and concatenation
take the union of their inputs' fields (for fields centred alike, as in a ResNet, that is the
larger one). Global pooling, Linear and Flatten make a unit see the whole input ("global").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import fx, nn


@dataclass(frozen=True)
class Field:
    size: int  # input pixels one unit sees along this axis
    jump: int  # input pixels between adjacent units
    start: float  # centre of the first unit's field, in input pixel indices
    whole: bool = False  # sees the whole input (global pooling / Flatten / Linear)

    def __str__(self) -> str:
        return "global" if self.whole else f"{self.size}/{self.jump}/{self.start:g}"


Fields = tuple[Field, Field]  # (H axis, W axis)
Geometry = tuple[tuple[int, int, int, int], ...]  # per axis (kernel, stride, pad, dilation)

_COMPOSED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # kernel/stride/padding/dilation layers
# Make a unit see everything. Adaptive pools count as global even for outputs above 1×1: their
# windows depend on the input size, and in classifiers a Flatten + Linear follows anyway.
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)
# Change the spatial grid in ways the recurrence above does not describe (upsampling, 1-D/3-D):
# their field, and everything after them, is reported as unknown rather than guessed.
_UNKNOWN = (
    nn.modules.conv._ConvNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Fold,
    nn.Unfold,
)
_GLOBAL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min"}  # global when over H or W


def input_fields() -> Fields:
    return Field(1, 1, 0.0), Field(1, 1, 0.0)


def geometry(module: nn.Module) -> Geometry:
    """(kernel, stride, left padding, dilation) per spatial axis of a conv or pooling layer."""
    pair = nn.modules.utils._pair
    kernel, stride = pair(module.kernel_size), pair(module.stride)
    dilation = pair(getattr(module, "dilation", 1))  # AvgPool2d has none
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":  # PyTorch puts the odd pixel of 'same' padding on the right
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    padding = pair(padding)
    return tuple(zip(kernel, stride, padding, dilation, strict=True))


def compose(field: Field, kernel: int, stride: int, pad: int, dilation: int) -> Field:
    """The recurrence in the module docstring, for one axis."""
    if field.whole:
        return field
    return Field(
        size=field.size + (kernel - 1) * dilation * field.jump,
        jump=field.jump * stride,
        start=field.start + ((kernel - 1) / 2 * dilation - pad) * field.jump,
    )


def whole(image_hw: tuple[int, int]) -> Fields:
    """One unit that sees the whole (H, W) image: size is the image extent, centred on it."""
    return tuple(Field(n, n, (n - 1) / 2, whole=True) for n in image_hw)


def union(fields: list[Field]) -> Field:
    """Field of a unit computed elementwise from the same position of several inputs.

    The pixels seen are the union of the inputs' intervals [start - (size-1)/2, start +
    (size-1)/2]; inputs of the same shape share a jump (broadcasting could differ: the coarser
    one is kept, since it describes the output grid at least as well)."""
    if any(f.whole for f in fields):
        return next(f for f in fields if f.whole)
    lo = min(f.start - (f.size - 1) / 2 for f in fields)
    hi = max(f.start + (f.size - 1) / 2 for f in fields)
    return Field(round(hi - lo + 1), max(f.jump for f in fields), (lo + hi) / 2)


def through(module: nn.Module, fields: Fields | None, image_hw: tuple[int, int]) -> Fields | None:
    """Fields of a layer's output given its input's; None when unknown."""
    if fields is None:
        return None
    if isinstance(module, _COMPOSED):
        return tuple(compose(f, *g) for f, g in zip(fields, geometry(module), strict=True))
    if isinstance(module, _GLOBAL):
        return whole(image_hw)
    if isinstance(module, _UNKNOWN):
        return None
    return fields  # elementwise on each position: BatchNorm, activations, Dropout, Identity


def sequential(calls: list[tuple[str, nn.Module]], image_hw: tuple[int, int]) -> list:
    """Fields after each leaf call, composing them in call order as if the net were a chain.

    Right for plain stacks; wrong for branching nets (a shortcut conv is composed onto the
    residual branch), hence only the fallback when the model cannot be traced."""
    fields, out = input_fields(), []
    for _name, module in calls:
        fields = through(module, fields, image_hw)
        out.append(fields)
    return out


class _LeafTracer(fx.Tracer):
    """Every module without children is one graph node, so nodes line up with the summary's
    rows (the default tracer only stops at torch.nn modules and traces into custom ones)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return next(m.children(), None) is None


def traced(model: nn.Module, image_hw: tuple[int, int]) -> list[tuple[str, Fields | None]]:
    """(module name, output fields) of every call_module node of the model's fx graph, in
    forward order. Raises whatever tracing raises (data-dependent control flow, ...)."""
    graph = _LeafTracer().trace(model)
    at: dict[fx.Node, Fields | None] = {}  # only nodes computed from the image
    calls = []
    for node in graph.nodes:
        if node.op == "placeholder":
            if not at:  # the first argument is the image; others (flags, masks) are not
                at[node] = input_fields()
            continue
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        inputs = [at[n] for n in node.all_input_nodes if n in at]
        if not inputs or None in inputs:  # not from the image, or after an unknown layer
            merged = None
        else:  # per axis, the union over the inputs
            merged = tuple(union(list(axis)) for axis in zip(*inputs, strict=True))
        if node.op == "call_module":
            field = through(model.get_submodule(node.target), merged, image_hw)
            calls.append((node.target, field))
        elif merged is not None and _reduces_space(node):
            field = whole(image_hw)
        else:  # elementwise, concatenation, reshapes: operator.add, torch.cat, relu, view, ...
            field = merged
        if inputs:
            at[node] = field
    return calls


def _reduces_space(node: fx.Node) -> bool:
    """Global pooling written as a function call: F.adaptive_avg_pool2d, x.mean((2, 3)), ..."""
    if node.op == "call_function" and node.target in _GLOBAL_FUNCTIONS:
        return True
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if name not in _REDUCTIONS:
        return False
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if dims is None:  # reduces everything
        return True
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    return any(isinstance(d, int) and d in (2, 3, -1, -2) for d in dims)


def receptive_fields(
    model: nn.Module, calls: list[tuple[str, nn.Module]], image_hw: tuple[int, int]
) -> tuple[list[Fields | None], str]:
    """Fields of each leaf call (as recorded by forward hooks, in order) and how they were found.

    The fx graph is used when the model traces; its call_module nodes are matched to the hook
    calls by name, in order (a module called twice, like torchvision's shared ReLU, has a node
    per call). Otherwise the chain composition, with the reason in the method note."""
    try:
        nodes = traced(model, image_hw)
    except Exception as e:  # tracing runs the user's forward on proxies: any failure means fallback
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        note = f"sequential through leaf layers (torch.fx could not trace: {reason[:80]})"
        return sequential(calls, image_hw), note
    queues: dict[str, list] = {}
    for name, fields in nodes:
        queues.setdefault(name, []).append(fields)
    out = [queues[name].pop(0) if queues.get(name) else None for name, _ in calls]
    return out, "torch.fx graph"
