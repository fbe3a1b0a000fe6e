"""The built-in `digits` source: real 8x8 handwritten digits, shipped inside scikit-learn."""

import pytest
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.registry import SOURCES
from cnnlab.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    return SOURCES.get("digits")(DataConfig())


def test_digits_is_1797_gray_8x8_uint8_images(digits):
    images = digits.train.images
    assert images.dtype == torch.uint8
    assert tuple(images.shape) == (1797, 1, 8, 8)


def test_digits_pixels_span_the_full_uint8_range(digits):
    # The source rescales sklearn's 0..16 counts to 0..255; a forgotten rescale would cap at 16.
    assert int(digits.train.images.min()) == 0
    assert int(digits.train.images.max()) == 255


def test_digits_labels_are_int64_0_to_9_with_10_class_names(digits):
    labels = digits.train.labels
    assert labels.dtype == torch.int64
    assert labels.shape == (1797,)
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert digits.train.classes == tuple(str(i) for i in range(10))


def test_digits_has_no_own_val_or_test_split(digits):
    # So data.build splits validation off with data.val_split.
    assert digits.val is None and digits.test is None


def test_digits_refuses_a_root_it_would_ignore(tmp_path):
    # Shipped inside scikit-learn: an explicit data.root would be silently ignored.
    with pytest.raises(ConfigError, match=f"data.root = {tmp_path}: digits ships inside"):
        SOURCES.get("digits")(DataConfig(root=str(tmp_path)))
    assert "scikit-learn" in SOURCES.get("digits")(DataConfig()).location
