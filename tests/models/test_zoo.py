"""The built-in zoo (cnn, vgg, resnet18/34/50, wrn, fastnet): shapes, parameter counts against
plain reference nets (torchvision for the ResNets), and that each model.* option changes the net.
"""

import inspect

import pytest
import torch
import torchvision
from torch import nn

from cnnlab import models
from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError

ZOO = ["cnn", "vgg", "resnet18", "resnet34", "resnet50", "wrn", "fastnet"]
SHAPES = [(1, 28), (3, 32), (3, 64)]  # (in_channels, image size)
SMALL = {"width": 8, "depth": 10, "widen": 1}  # fast sizes, for the models that take the option


def takes(name: str) -> set[str]:
    return set(inspect.signature(models.MODELS.get(name)).parameters)


def build(name, channels=3, size=32, classes=10, **options) -> nn.Module:
    torch.manual_seed(0)
    small = {k: v for k, v in SMALL.items() if k in takes(name)}
    cfg = ModelConfig(name=name, **{**small, **options})
    return models.create(cfg, num_classes=classes, in_channels=channels, image_size=(size, size))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


def count_of(module_type: type[nn.Module], model: nn.Module) -> int:
    return sum(isinstance(m, module_type) for m in model.modules())


def leaf_types(model: nn.Module) -> list[type[nn.Module]]:
    return [type(m) for m in model.modules() if not list(m.children())]


def input_size_of(block_type: type[nn.Module], model: nn.Module, x: torch.Tensor) -> int:
    """Height of the map entering the first `block_type` module."""
    first = next(m for m in model.modules() if isinstance(m, block_type))
    seen = []
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


def test_zoo_is_registered():
    assert set(ZOO) <= set(models.MODELS.names())


# --- every model, every input shape -----------------------------------------------------------


@pytest.mark.parametrize("channels,size", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ZOO)
def test_forward_backward_on_mnist_cifar_and_tiny_imagenet_shapes(name, channels, size):
    model = build(name, channels, size, classes=7)
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (2, 7)
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 6]))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ZOO)
def test_activation_option_reaches_every_layer(name):
    kinds = {type(m) for m in build(name, activation="silu").modules()}
    assert nn.SiLU in kinds and nn.ReLU not in kinds


@pytest.mark.parametrize("name", [n for n in ZOO if "separable" in takes(n)])
def test_separable_reduces_parameters_with_depthwise_convs(name):
    full, sep = build(name), build(name, separable=True)
    assert count(sep) < count(full)
    depthwise = [m for m in sep.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels for m in depthwise)
    # The stem reads the image channels and stays a full convolution.
    assert next(m for m in sep.modules() if isinstance(m, nn.Conv2d)).groups == 1


@pytest.mark.parametrize("name", [n for n in ZOO if "se" in takes(n)])
def test_se_adds_parameters_and_sigmoid_gates(name):
    plain, se = build(name), build(name, se=True)
    assert count(se) > count(plain)
    assert count_of(nn.Sigmoid, se) > 0 and count_of(nn.Sigmoid, plain) == 0


@pytest.mark.parametrize("name", [n for n in ZOO if "dropout" in takes(n)])
def test_dropout_option_reaches_the_model(name):
    rates = {m.p for m in build(name, dropout=0.25).modules() if isinstance(m, nn.Dropout)}
    assert rates - {0.0} == {0.25}  # wrn's head keeps p=0: its dropout is inside the blocks


# --- cnn --------------------------------------------------------------------------------------


def reference_cnn(cin: int, w: int, classes: int, sep: bool = False) -> nn.Sequential:
    def conv(a, b, first=False):
        if sep and not first:
            return [
                nn.Conv2d(a, a, 3, padding=1, groups=a, bias=False),
                nn.Conv2d(a, b, 1, bias=False),
            ]
        return [nn.Conv2d(a, b, 3, padding=1, bias=False)]

    def cba(a, b, first=False):
        return [*conv(a, b, first), nn.BatchNorm2d(b), nn.ReLU()]

    return nn.Sequential(
        *cba(cin, w, first=True), *cba(w, w), nn.MaxPool2d(2),
        *cba(w, 2 * w), *cba(2 * w, 2 * w), nn.MaxPool2d(2),
        *cba(2 * w, 4 * w), *cba(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes),
    )  # fmt: skip


@pytest.mark.parametrize("sep", [False, True])
@pytest.mark.parametrize("channels,width", [(1, 32), (3, 16)])
def test_cnn_matches_a_plain_reference(channels, width, sep):
    model = build("cnn", channels, 32, width=width, separable=sep)
    assert shapes(model) == shapes(reference_cnn(channels, width, 10, sep))


def test_cnn_se_adds_one_gate_per_stage():
    model = build("cnn", width=16, se=True)
    assert count_of(nn.Sigmoid, model) == 3
    # Each gate: (C -> C/4, bias) + (C/4 -> C, bias) for C = 16, 32, 64.
    gates = sum(c * (c // 4) * 2 + c // 4 + c for c in (16, 32, 64))
    assert count(model) == count(build("cnn", width=16)) + gates


# --- vgg --------------------------------------------------------------------------------------


def reference_vgg(cin, w, stages, bn, classes, size):
    layers = []
    for i, n in enumerate(stages):
        for _ in range(n):
            layers += [nn.Conv2d(cin, w * 2**i, 3, padding=1, bias=not bn)]
            layers += [nn.BatchNorm2d(w * 2**i)] if bn else []
            layers += [nn.ReLU()]
            cin = w * 2**i
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.0), nn.Linear(cin, classes)]
    return nn.Sequential(*layers, *head)


@pytest.mark.parametrize("stages,bn", [([2, 2, 2], True), ([1, 2, 3, 1], False), ([3], True)])
def test_vgg_matches_a_plain_reference(stages, bn):
    model = build("vgg", 3, 32, width=16, stages=stages, bn=bn)
    ref = reference_vgg(3, 16, stages, bn, 10, 32)
    assert shapes(model) == shapes(ref)
    assert leaf_types(model) == leaf_types(ref)


def test_vgg_pools_only_while_the_map_is_at_least_2px():
    model = build("vgg", 1, 8, stages=[1, 1, 1, 1, 1])  # 8 -> 4 -> 2 -> 1, then no more pools
    assert count_of(nn.MaxPool2d, model) == 3
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_vgg_without_bn_has_conv_biases_and_no_batchnorm():
    model = build("vgg", bn=False)
    assert count_of(nn.BatchNorm2d, model) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("stages", [[], [2, 0]])
def test_vgg_rejects_empty_stages(stages):
    with pytest.raises(ConfigError, match=r"model\.stages"):
        build("vgg", stages=stages)


# --- resnet -----------------------------------------------------------------------------------

RESNETS = ["resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize("name", RESNETS)
def test_resnet_with_imagenet_stem_is_torchvisions(name):
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build(name, 3, 224, width=64, stem="imagenet", maxpool=True)
        ref = getattr(torchvision.models, name)(num_classes=10)
    assert count(model) == count(ref)
    assert sorted(shapes(model)) == sorted(shapes(ref))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", RESNETS)
def test_resnet_small_stem_is_torchvision_with_a_3x3_stem(name, channels):
    with torch.device("meta"):
        model = build(name, channels, 32, width=64)
        ref = getattr(torchvision.models, name)(num_classes=10)
    # The 7x7 stem over 3 channels becomes a 3x3 one over `channels`: 49*3 -> 9*channels weights.
    assert count(model) == count(ref) - 64 * (49 * 3 - 9 * channels)


def test_resnet_width_scales_every_stage():
    model = build("resnet18", width=16)
    outs = sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)})
    assert outs == [16, 32, 64, 128]


@pytest.mark.parametrize(
    "stem,maxpool,size", [("small", False, 32), ("imagenet", False, 16), ("imagenet", True, 8)]
)
def test_resnet_stem_and_maxpool_set_the_first_stage_resolution(stem, maxpool, size):
    from cnnlab.models.layers import BasicBlock

    model = build("resnet18", stem=stem, maxpool=maxpool)
    assert input_size_of(BasicBlock, model, torch.randn(1, 3, 32, 32)) == size


def test_resnet_extra_pool_after_inserts_max_pools_and_shrinks_the_map():
    plain = build("resnet18", 3, 64)
    pooled = build("resnet18", 3, 64, extra_pool_after=[1, 3])
    assert count_of(nn.MaxPool2d, plain) == 0 and count_of(nn.MaxPool2d, pooled) == 2
    assert count(pooled) == count(plain)
    x = torch.randn(1, 3, 64, 64)
    assert input_size_of(nn.AdaptiveAvgPool2d, plain, x) == 8
    assert input_size_of(nn.AdaptiveAvgPool2d, pooled, x) == 2


def test_resnet_extra_pool_after_rejects_unknown_stages_and_too_small_maps():
    with pytest.raises(ConfigError, match=r"model\.extra_pool_after = \[5\]: stages are numbered"):
        build("resnet18", extra_pool_after=[5])
    with pytest.raises(ConfigError, match="too small to pool"):
        build("resnet18", 3, 8, extra_pool_after=[4])  # 8 -> 4 -> 2 -> 1 px after stage 4


def test_resnet50_uses_bottlenecks_with_4x_expansion():
    model = build("resnet50", width=8)
    assert model[-1][-1].in_features == 8 * 8 * 4


# --- wrn --------------------------------------------------------------------------------------


def wrn_params(depth: int, k: int, classes: int = 10, cin: int = 3) -> int:
    """Parameters of WRN-depth-k counted by hand: conv weights, BN (weight + bias), linear."""
    n = (depth - 4) // 6
    total = 9 * cin * 16  # stem
    c = 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += 2 * c + 9 * c * width + 2 * width + 9 * width * width  # BN conv BN conv
            if c != width:
                total += c * width  # 1x1 projection of the shortcut
            c = width
    return total + 2 * c + c * classes + classes  # final BN, linear


@pytest.mark.parametrize("depth,k,paper", [(16, 4, 2.75e6), (28, 10, 36.5e6), (10, 1, None)])
def test_wrn_parameter_count_matches_hand_count_and_paper(depth, k, paper):
    with torch.device("meta"):
        model = build("wrn", depth=depth, widen=k)
    assert count(model) == wrn_params(depth, k)
    if paper:
        assert count(model) == pytest.approx(paper, rel=0.005)


def test_wrn_depth_must_be_6n_plus_4():
    msg = "model.depth = 17: WRN depth must be 6n+4 (10, 16, 22, 28, 40)"
    with pytest.raises(ConfigError) as e:
        build("wrn", depth=17)
    assert str(e.value) == msg


def test_wrn_depth_and_widen_set_blocks_and_widths():
    from cnnlab.models.layers import WideBasic

    model = build("wrn", depth=22, widen=2)
    assert count_of(WideBasic, model) == 3 * 3
    outs = {m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert outs == {16, 32, 64, 128}


def test_wrn_dropout_sits_inside_every_block():
    from cnnlab.models.layers import WideBasic

    model = build("wrn", depth=16, dropout=0.3)
    blocks = [m for m in model.modules() if isinstance(m, WideBasic)]
    assert all(count_of(nn.Dropout, b) == 1 for b in blocks)


# --- fastnet ----------------------------------------------------------------------------------


def reference_fastnet(cin, w, classes):
    def group(a, b):
        return [
            nn.Conv2d(a, b, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(b),
            nn.ReLU(), nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
        ]  # fmt: skip

    return nn.Sequential(
        nn.Conv2d(cin, w, 2), nn.ReLU(),
        *group(w, 2 * w), *group(2 * w, 8 * w), *group(8 * w, 8 * w),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, classes, bias=False),
    )  # fmt: skip


def test_fastnet_is_airbench94_shaped_at_width_32():
    with torch.device("meta"):
        model = build("fastnet", width=32)
    assert shapes(model) == shapes(reference_fastnet(3, 32, 10))
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [32, 64, 64, 256, 256, 256, 256]  # airbench94: 24, then 64, 256, 256


def test_fastnet_scales_logits_by_one_ninth():
    model = build("fastnet").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model[:-1](x) / 9)


def test_fastnet_stem_trims_one_pixel_and_skips_pools_on_tiny_maps():
    model = build("fastnet", 1, 28)
    first_group = model[2]
    assert input_size_of(type(first_group), model, torch.randn(1, 1, 28, 28)) == 27
    tiny = build("fastnet", 1, 8)  # 8 -> 7 -> 3 -> 1: the last group cannot pool
    assert count_of(nn.MaxPool2d, tiny) == 2
