"""Every registered model builds, runs forward and backward, for gray 8x8 and RGB 32x32 input.

(Named test_model_registry.py, not test_registry.py: tests/ has no __init__.py files, so two
test modules with the same basename cannot be collected together.)
"""

import inspect
import typing

import pytest
import torch

from cnnlab import models
from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError

ALL_MODELS = models.MODELS.names()
SHAPES = [(1, 8), (3, 32)]  # (in_channels, image size)
ACTIVATIONS = typing.get_args(ModelConfig.model_fields["activation"].annotation)
INITS = typing.get_args(ModelConfig.model_fields["init"].annotation)
# Small, fast settings, each given only to the models whose builder takes that option.
SMALL = {
    "width": 8,
    "depth": 10,
    "widen": 1,
    "layers": [
        "conv(8, 3)",
        "bn",
        "act",
        "maxpool(2)",
        "conv(16, 3)",
        "bn",
        "act",
        "gap",
        "linear",
    ],
}


def build(name="cnn", channels=1, size=8, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    takes = inspect.signature(models.MODELS.get(name)).parameters if name in models.MODELS else {}
    small = {k: v for k, v in SMALL.items() if k in takes}
    cfg = ModelConfig(name=name, **{**small, **options})
    return models.create(cfg, num_classes=10, in_channels=channels, image_size=(size, size))


def forward_backward(model: torch.nn.Module, channels: int, size: int) -> torch.Tensor:
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    out = model(x)
    out.logsumexp(dim=1).mean().backward()
    return out


def test_registry_has_the_built_in_models():
    assert {"cnn", "mlp"} <= set(ALL_MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("channels,size", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_gives_finite_logits_per_class(name, channels, size):
    model = build(name, channels, size)
    out = forward_backward(model, channels, size)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("channels,size", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter_with_finite_grads(name, channels, size):
    model = build(name, channels, size)
    forward_backward(model, channels, size)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has non-finite gradients"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_eval_mode_forward_of_a_single_image(name):
    # Evaluation batches can be of size 1 (the last partial batch): BatchNorm must cope in eval.
    model = build(name, 3, 32).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_activation_builds_and_runs(name, activation):
    model = build(name, activation=activation)
    out = forward_backward(model, 1, 8)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_activation_option_reaches_the_model():
    kinds = {type(m).__name__ for m in build("cnn", activation="gelu").modules()}
    assert "GELU" in kinds and "ReLU" not in kinds


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_init_builds_and_runs(name, init):
    model = build(name, init=init)
    out = forward_backward(model, 1, 8)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("init", [i for i in INITS if i != "default"])
def test_init_changes_weights_and_zeroes_biases(init):
    default = build("mlp")
    changed = build("mlp", init=init)  # same torch seed: any difference is the init's doing
    assert not torch.equal(default[1].weight, changed[1].weight)
    assert (changed[1].bias == 0).all() and (changed[-1].bias == 0).all()


def test_width_and_dropout_reach_the_model():
    model = build("cnn", width=4, dropout=0.3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 4
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.3]


def test_unknown_model_name_is_a_config_error_listing_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build("resnet9000")
    msg = str(e.value)
    assert "model.name" in msg and "'resnet9000'" in msg
    for name in ALL_MODELS:
        assert name in msg.split("valid:")[1]


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean cnn?"):
        build("cnnn")


def test_duplicate_registration_is_refused():
    with pytest.raises(RuntimeError, match="registered twice"):
        models.MODELS.register("cnn")(lambda **kw: None)
