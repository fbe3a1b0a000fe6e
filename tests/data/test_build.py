"""cnnlab.data.build: source -> split -> convert -> statistics, from a DataConfig."""

import pytest
import torch

from cnnlab import data
from cnnlab.config.schema import DataConfig
from cnnlab.data.stats import channel_stats
from cnnlab.errors import ConfigError


@pytest.fixture(scope="module")
def default_bundle():
    return data.build(DataConfig())


def test_default_digits_splits_1438_train_359_val(default_bundle):
    assert len(default_bundle.train) == 1438
    assert len(default_bundle.val) == 359
    assert default_bundle.test is None


def test_info_describes_the_training_set(default_bundle):
    info = default_bundle.info
    assert info.name == "digits"
    assert info.classes == tuple(str(i) for i in range(10))
    assert info.num_classes == 10
    assert info.channels == 1
    assert info.image_size == (8, 8)
    mean, std = channel_stats(default_bundle.train.images)
    assert info.mean == pytest.approx(mean) and info.std == pytest.approx(std)
    assert 0.0 < info.mean[0] < 1.0 and 0.0 < info.std[0] < 1.0  # on the [0, 1] scale


def test_build_is_reproducible_and_follows_split_seed(default_bundle):
    again = data.build(DataConfig())
    assert torch.equal(again.val.images, default_bundle.val.images)
    other = data.build(DataConfig(split_seed=1))
    assert not torch.equal(other.val.labels, default_bundle.val.labels)


def test_val_split_count(default_bundle):
    bundle = data.build(DataConfig(val_split=100))
    assert (len(bundle.train), len(bundle.val)) == (1697, 100)


def test_normalize_none_gives_mean_0_std_1():
    info = data.build(DataConfig(normalize="none", channels=3)).info
    assert info.mean == (0.0, 0.0, 0.0) and info.std == (1.0, 1.0, 1.0)


def test_channels_and_image_size_convert_every_split():
    bundle = data.build(DataConfig(channels=3, image_size=16))
    for split in (bundle.train, bundle.val):
        assert split.images.shape[1:] == (3, 16, 16)
    assert bundle.info.channels == 3 and bundle.info.image_size == (16, 16)
    assert len(bundle.info.mean) == len(bundle.info.std) == 3


def test_a_sources_own_test_split_is_kept_and_converted():
    # "digits-with-test" is registered by tests/conftest.py: every 5th digit held out as test.
    bundle = data.build(DataConfig(name="digits-with-test", channels=3, image_size=12))
    assert bundle.test is not None and len(bundle.test) == 360
    assert bundle.test.images.shape[1:] == (3, 12, 12)
    assert len(bundle.train) + len(bundle.val) == 1797 - 360


def test_unknown_name_lists_the_valid_ones_and_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        data.build(DataConfig(name="digit"))
    msg = str(e.value)
    assert "data.name" in msg and "'digit'" in msg
    assert "did you mean digits?" in msg
    assert "valid:" in msg and "digits" in msg.split("valid:")[1]


def test_unknown_name_without_a_close_match_still_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        data.build(DataConfig(name="zzz-unheard-of"))
    assert "did you mean" not in str(e.value)
    assert "digits" in str(e.value)


def test_impossible_val_split_for_the_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.val_split = 5"):
        data.build(DataConfig(val_split=5))  # fewer than the 10 classes
