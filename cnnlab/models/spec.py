"""model.name=layers: a net written as a list of layer strings, shape-checked while it is built.

    model:
      name: layers
      layers: [conv(32, 3), bn, relu, maxpool(2), conv(64, 3), bn, act, gap, linear]

Each string is parsed with `ast` (never eval'd): a layer is a bare name (`relu`) or a call with
number / True / False / None arguments (`conv(64, 3, stride=2)`); only `residual` takes a
[list] of layers. Channels and features are inferred from the layer before, so `conv` names
only its output channels and `linear` only its output features (bare `linear`: num_classes).

Layers (arguments in order; defaults after '='):
  conv(out, kernel, stride=1, padding=None, groups=1, bias=True)
      padding=None means kernel // 2: 'same' size for odd kernels at stride 1; give padding=0
      for a 'valid' convolution.
  sepconv(out, kernel, stride=1, padding=None)  depthwise kernel x kernel, then pointwise 1x1
  bn                      BatchNorm2d on maps, BatchNorm1d on flat features
  relu, leaky_relu(slope=0.01), gelu, silu, act (model.activation)
  maxpool(kernel, stride=None, padding=0), avgpool(...)   stride=None: stride = kernel
  gap                     global average pool to flat (N, C): `gap, linear` ends a conv net
  dropout(p)              p in [0, 1)
  se(reduction=4)         squeeze-and-excitation with C // reduction hidden units
  flatten                 (N, C, H, W) -> (N, C*H*W)
  linear(out=None)        needs flat input; out=None: num_classes
  residual([layers...])   x + body(x); when body changes the shape of a map, the shortcut is a
                          1x1 conv (stride to match the size) + BatchNorm, as in ResNet; of
                          flat features, a linear. A change between map and flat is an error.

Every layer is probed with a zero tensor of the incoming shape (1, C, H, W) as it is added, so a
wrong net fails at build time naming the layer, not at the first batch with a matmul error.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.layers import ACTIVATIONS, SqueezeExcite, conv1x1
from cnnlab.models.registry import register_model
from cnnlab.registry import did_you_mean

NUMBER = (int, float, bool)  # literal argument types; bool is not an int here (see _int)
Shape = tuple[int, ...]  # the probe's shape, batch of 1: (1, C, H, W) or (1, features)


@dataclass(frozen=True)
class Call:
    """One parsed layer: `conv(64, 3, stride=2)` -> Call('conv', [64, 3], {'stride': 2})."""

    name: str
    args: list = field(default_factory=list)  # numbers, or lists of Call (residual)
    kwargs: dict = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Context:
    """What a layer factory needs besides its arguments; `place` names it in errors."""

    where: str  # "model.layers[7]", or "model.layers[3].residual[1]" inside a residual
    text: str  # "linear(512)"
    num_classes: int
    activation: str

    def fail(self, msg: str) -> ConfigError:
        return ConfigError(f"{self.where} {self.text}: {msg}")


# ---------------------------------------------------------------- parsing (ast, never eval)


def parse(text: str, place: str) -> Call:
    """'conv(64, 3, stride=2)' -> Call; anything but names, calls, numbers and lists is refused."""
    if not isinstance(text, str):
        raise ConfigError(f"{place}: expected a layer string such as 'conv(32, 3)', got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ConfigError(
            f"{place} {text!r}: not a layer expression ({e.msg}); expected e.g. 'conv(32, 3)'"
        ) from None
    return _layer(tree, text, place)


def _layer(node: ast.expr, text: str, place: str) -> Call:
    if isinstance(node, ast.Name):
        return Call(node.id, text=ast.unparse(node))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_value(a, text, place) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:  # **mapping: nothing to expand in a config string
                raise ConfigError(f"{place} {text!r}: '**' arguments are not allowed")
            kwargs[kw.arg] = _value(kw.value, text, place)
        return Call(node.func.id, args, kwargs, ast.unparse(node))
    raise ConfigError(
        f"{place} {text!r}: expected a layer name or call such as 'relu' or 'conv(32, 3)',"
        f" got {ast.unparse(node)!r}"
    )


def _value(node: ast.expr, text: str, place: str):
    """A literal argument: a number, True/False/None, or a [list of layers] for residual."""
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in NUMBER):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        return -node.operand.value  # so 'conv(-1, 3)' reaches the range check, not a parse error
    if isinstance(node, ast.List):
        return [_layer(e, text, place) for e in node.elts]
    raise ConfigError(
        f"{place} {text!r}: argument {ast.unparse(node)} is not allowed"
        " (expected a number, True, False, None or a [list of layers])"
    )


# ---------------------------------------------------------------- argument checks


def _int(ctx: Context, name: str, value, low: int = 1) -> int:
    if type(value) is not int or value < low:
        raise ctx.fail(f"argument {name} must be an integer >= {low}, got {value!r}")
    return value


def _rate(ctx: Context, name: str, value, low: float, high: float) -> float:
    """A float in [low, high)."""
    if type(value) not in (int, float) or not low <= value < high:
        raise ctx.fail(f"argument {name} must be a number in [{low}, {high}), got {value!r}")
    return float(value)


def _need_map(ctx: Context, shape: Shape) -> None:
    if len(shape) != 4:
        raise ctx.fail(
            f"expects an (N, C, H, W) feature map, got {shape}; it cannot follow flatten/gap/linear"
        )


def _need_flat(ctx: Context, shape: Shape) -> None:
    if len(shape) != 2:
        raise ctx.fail(
            f"expects a flat (N, features) input, got {shape}; add flatten (or gap) before it"
        )


def _fits(ctx: Context, shape: Shape, kernel: int, stride: int, padding: int, what: str) -> None:
    """The window must fit the padded map at least once: output size >= 1 in H and W."""
    h, w = shape[2], shape[3]
    if min(h, w) + 2 * padding < kernel:
        pad = f" padded by {padding}" if padding else ""
        raise ctx.fail(f"input {h}×{w}{pad} is smaller than the {what} ({kernel}×{kernel})")


# ---------------------------------------------------------------- layers
# Each factory takes (ctx, shape, /, *the user's arguments) and returns a module; the user's
# arguments are bound against its signature, so names and defaults here are the spec language.


def _conv_args(ctx, shape, out, kernel, stride, padding) -> tuple[int, int, int, int]:
    """Checked (out, kernel, stride, padding) of a conv on `shape`; padding None: kernel // 2."""
    _need_map(ctx, shape)
    out, kernel, stride = (
        _int(ctx, "out", out),
        _int(ctx, "kernel", kernel),
        _int(ctx, "stride", stride),
    )
    padding = kernel // 2 if padding is None else _int(ctx, "padding", padding, low=0)
    _fits(ctx, shape, kernel, stride, padding, "kernel")
    return out, kernel, stride, padding


def conv(ctx, shape, /, out, kernel, stride=1, padding=None, groups=1, bias=True):
    out, kernel, stride, padding = _conv_args(ctx, shape, out, kernel, stride, padding)
    groups = _int(ctx, "groups", groups)
    if shape[1] % groups or out % groups:
        raise ctx.fail(f"groups={groups} must divide both in channels {shape[1]} and out {out}")
    if type(bias) is not bool:
        raise ctx.fail(f"argument bias must be True or False, got {bias!r}")
    return nn.Conv2d(shape[1], out, kernel, stride, padding, groups=groups, bias=bias)


class SepConv(nn.Sequential):
    """Depthwise k×k (one filter per channel) then pointwise 1×1: ~k² times fewer weights.
    (layers.SeparableConv is 3×3 'same' only; a spec may name any kernel and padding.)"""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1),
        )


def sepconv(ctx, shape, /, out, kernel, stride=1, padding=None):
    out, kernel, stride, padding = _conv_args(ctx, shape, out, kernel, stride, padding)
    return SepConv(shape[1], out, kernel, stride, padding)


def bn(ctx, shape, /):
    if len(shape) == 2:
        return nn.BatchNorm1d(shape[1])
    _need_map(ctx, shape)
    return nn.BatchNorm2d(shape[1])


def _pool(kind: type[nn.Module]) -> Callable[..., nn.Module]:
    def pool(ctx, shape, /, kernel, stride=None, padding=0):
        _need_map(ctx, shape)
        kernel = _int(ctx, "kernel", kernel)
        stride = kernel if stride is None else _int(ctx, "stride", stride)
        padding = _int(ctx, "padding", padding, low=0)
        if padding > kernel // 2:  # torch's own limit for pooling
            raise ctx.fail(f"argument padding must be at most kernel // 2 = {kernel // 2}")
        _fits(ctx, shape, kernel, stride, padding, "window")
        return kind(kernel, stride, padding)

    return pool


def gap(ctx, shape, /):
    _need_map(ctx, shape)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, C, H, W) -> (N, C)


def dropout(ctx, shape, /, p):
    return nn.Dropout(_rate(ctx, "p", p, 0.0, 1.0))


def se(ctx, shape, /, reduction=4):
    _need_map(ctx, shape)
    return SqueezeExcite(shape[1], _int(ctx, "reduction", reduction))


def flatten(ctx, shape, /):
    return nn.Flatten()


def linear(ctx, shape, /, out=None):
    _need_flat(ctx, shape)
    out = ctx.num_classes if out is None else _int(ctx, "out", out)
    return nn.Linear(shape[1], out)


def leaky_relu(ctx, shape, /, slope=0.01):
    if type(slope) not in (int, float):
        raise ctx.fail(f"argument slope must be a number, got {slope!r}")
    return nn.LeakyReLU(float(slope))


def act(ctx, shape, /):
    return ACTIVATIONS[ctx.activation]()


def _plain(kind: type[nn.Module]) -> Callable[..., nn.Module]:
    def make(ctx, shape, /):
        return kind()

    return make


def residual(ctx, shape, /, body):
    if not isinstance(body, list) or not body:
        raise ctx.fail(f"argument body must be a non-empty [list of layers], got {body!r}")
    layers, out = build_layers(body, shape, ctx, f"{ctx.where}.residual")
    return Residual(nn.Sequential(*layers), _shortcut(ctx, shape, out))


class Residual(nn.Module):
    """body(x) + shortcut(x): the shortcut is the identity or a projection to body's shape."""

    def __init__(self, body: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _shortcut(ctx: Context, shape: Shape, out: Shape) -> nn.Module:
    """Identity when the shape is kept; else the ResNet projection that makes the add valid."""
    if out == shape:
        return nn.Identity()
    if len(shape) == len(out) == 2:
        return nn.Linear(shape[1], out[1])
    if len(shape) == len(out) == 4:
        # a 1x1 conv at stride s (no padding) maps size h to (h - 1) // s + 1
        for s in range(1, max(shape[2:]) + 1):
            if ((shape[2] - 1) // s + 1, (shape[3] - 1) // s + 1) == out[2:]:
                return nn.Sequential(conv1x1(shape[1], out[1], s), nn.BatchNorm2d(out[1]))
        raise ctx.fail(
            f"its body turns {shape} into {out}; no strided 1×1 shortcut gives"
            f" {out[2]}×{out[3]} from {shape[2]}×{shape[3]} (keep the size or halve it with stride)"
        )
    raise ctx.fail(f"its body turns {shape} into {out}; a residual must keep a map a map")


LAYERS: dict[str, Callable[..., nn.Module]] = {
    "conv": conv,
    "sepconv": sepconv,
    "bn": bn,
    "relu": _plain(nn.ReLU),
    "leaky_relu": leaky_relu,
    "gelu": _plain(nn.GELU),
    "silu": _plain(nn.SiLU),
    "act": act,
    "maxpool": _pool(nn.MaxPool2d),
    "avgpool": _pool(nn.AvgPool2d),
    "gap": gap,
    "dropout": dropout,
    "se": se,
    "flatten": flatten,
    "linear": linear,
    "residual": residual,
}


def usage(name: str) -> str:
    """'conv(out, kernel, stride=1, padding=None, groups=1, bias=True)' from the factory."""
    params = list(inspect.signature(LAYERS[name]).parameters.values())[2:]  # past ctx, shape
    return f"{name}({', '.join(str(p) for p in params)})" if params else name


# ---------------------------------------------------------------- building


def build_layers(
    calls: list[Call], shape: Shape, outer: Context, where: str
) -> tuple[list[nn.Module], Shape]:
    """Modules for `calls` in order, probing each with zeros; returns them and the out shape."""
    modules = []
    for i, call in enumerate(calls):
        ctx = Context(f"{where}[{i}]", call.text, outer.num_classes, outer.activation)
        module = make_layer(ctx, call, shape)
        shape = probe(ctx, module, shape)
        modules.append(module)
    return modules, shape


def make_layer(ctx: Context, call: Call, shape: Shape) -> nn.Module:
    """The module for one call, after checking its name and binding its arguments."""
    if call.name not in LAYERS:
        names = sorted(LAYERS)
        raise ctx.fail(
            f"unknown layer {call.name!r}{did_you_mean(call.name, names)}"
            f" (valid: {', '.join(names)})"
        )
    factory = LAYERS[call.name]
    try:
        inspect.signature(factory).bind(ctx, shape, *call.args, **call.kwargs)
    except TypeError as e:
        # e.g. "missing a required argument: 'kernel'", "got an unexpected keyword argument 'strde'"
        raise ctx.fail(f"{e}; usage: {usage(call.name)}") from None
    return factory(ctx, shape, *call.args, **call.kwargs)


def probe(ctx: Context, module: nn.Module, shape: Shape) -> Shape:
    """Runs zeros of `shape` through the module in eval mode (BatchNorm's running statistics
    stay untouched and a batch of one is allowed); returns the output shape."""
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(shape))
    except RuntimeError as e:  # a case the checks above missed: still a user error, named
        raise ctx.fail(f"cannot take input {shape}: {e}") from None
    finally:
        module.train()
    return tuple(out.shape)


@register_model("layers")
def layers_model(
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    layers: list[str],
    activation: str,
) -> nn.Module:
    """nn.Sequential of model.layers, each shape-checked as it is added (see module doc)."""
    if not layers:
        raise ConfigError(
            "model.layers is empty: model.name=layers needs a list such as"
            " [conv(32, 3), bn, relu, maxpool(2), gap, linear]"
        )
    calls = [parse(text, f"model.layers[{i}]") for i, text in enumerate(layers)]
    top = Context("model.layers", "", num_classes, activation)
    shape = (1, in_channels, *image_size)
    modules, out = build_layers(calls, shape, top, "model.layers")
    if out != (1, num_classes):
        raise ConfigError(
            f"model.layers: the last layer ({layers[-1]}) gives {out}, not (N, {num_classes})"
            f" logits for the {num_classes} classes; end with `linear` (after flatten or gap)"
        )
    return nn.Sequential(*modules)
