"""model.name = torchvision:NAME / timm:NAME: untrained library models shaped to the data."""

import inspect
import sys
import types

import pytest
import torch
from torch import nn

from cnnlab import models
from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import hub


def build(name, classes=7, channels=1, size=32, **options) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, **options)
    return models.create(cfg, num_classes=classes, in_channels=channels, image_size=(size, size))


def test_torchvision_resnet18_takes_gray_images_and_gives_our_classes():
    model = build("torchvision:resnet18")
    first = model.conv1
    assert (first.in_channels, first.out_channels) == (1, 64)
    assert (first.kernel_size, first.stride, first.padding) == ((7, 7), (2, 2), (3, 3))
    assert model.training
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_torchvision_rgb_keeps_the_original_first_conv():
    model = build("torchvision:resnet18", channels=3)
    assert model.conv1.in_channels == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_torchvision_first_conv_inside_a_sequential_is_replaced():
    model = build("torchvision:mobilenet_v3_small", channels=1)
    assert model.features[0][0].in_channels == 1
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 7)


def test_unknown_torchvision_name_suggests_the_close_one():
    with pytest.raises(ConfigError) as e:
        build("torchvision:resnet181")
    msg = str(e.value)
    assert "model.name = 'torchvision:resnet181'" in msg and "resnet18" in msg.split("close:")[1]


def test_torchvision_detection_models_are_not_classifiers():
    with pytest.raises(ConfigError, match="torchvision has no model 'fasterrcnn_resnet50_fpn'"):
        build("torchvision:fasterrcnn_resnet50_fpn")


@pytest.mark.slow
def test_torchvision_model_that_cannot_take_the_image_size_fails_at_build():
    with pytest.raises(ConfigError, match=r"'torchvision:vit_b_16': cannot take 3×32×32 images"):
        build("torchvision:vit_b_16", channels=3)


def test_torchvision_takes_no_model_options():
    assert set(inspect.signature(hub.builder("torchvision:resnet18")).parameters) == {
        "num_classes",
        "in_channels",
        "image_size",
    }
    with pytest.raises(ConfigError, match="model.dropout is not an option"):
        build("torchvision:resnet18", dropout=0.2)


def test_missing_timm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ConfigError) as e:
        build("timm:resnet18")
    assert str(e.value) == (
        "model.name = 'timm:resnet18': timm is not installed (pip install timm)"
    )


@pytest.fixture
def fake_timm(monkeypatch):
    """A stand-in timm recording what create_model was asked for (timm is optional)."""
    calls = []

    def create_model(name, pretrained, num_classes, in_chans, **kw):
        calls.append(dict(name=name, pretrained=pretrained, in_chans=in_chans, **kw))
        return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))  # fmt: skip

    fake = types.SimpleNamespace(
        list_models=lambda: ["resnet18", "resnet34", "convnext_tiny"], create_model=create_model
    )
    monkeypatch.setitem(sys.modules, "timm", fake)
    return calls


def test_timm_builds_untrained_with_our_channels_and_dropout(fake_timm):
    model = build("timm:resnet18", channels=1, dropout=0.3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert fake_timm == [
        dict(name="resnet18", pretrained=False, in_chans=1, drop_rate=0.3),
    ]


def test_unknown_timm_name_suggests_the_close_one(fake_timm):
    with pytest.raises(ConfigError, match=r"timm has no model 'resnet19'; close: resnet18"):
        build("timm:resnet19")


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("keras:x", "unknown model source 'keras' (valid: timm:NAME, torchvision:NAME)"),
        ("torchvision:", "expected torchvision:NAME"),
    ],
)
def test_bad_source_or_empty_name(name, fragment):
    with pytest.raises(ConfigError) as e:
        build(name)
    assert f"model.name = {name!r}: " in str(e.value) and fragment in str(e.value)
