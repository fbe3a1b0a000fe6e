"""config.names: short labels of config values."""

import pytest

from cnnlab.config.names import backbone_label


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("torchvision:resnet18", "torchvision:resnet18"),
        ("runs/20261123-101500-digits-cnn", "digits-cnn"),
        ("runs/20261123-101500-digits-cnn/checkpoints/best.safetensors", "digits-cnn"),
        ("/weights/tops.safetensors", "tops.safetensors"),
    ],
)
def test_backbone_label(spec, label):
    assert backbone_label(spec) == label
