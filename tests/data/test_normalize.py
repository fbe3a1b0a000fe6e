import pytest

from cnnlab.config.schema import DataConfig
from cnnlab.data import build
from cnnlab.data.stats import PRESETS
from cnnlab.errors import ConfigError


def test_imagenet_preset_on_rgb_images():
    info = build(DataConfig(normalize="imagenet", channels=3)).info
    assert (info.mean, info.std) == PRESETS["imagenet"]


def test_imagenet_preset_on_gray_images_says_how_to_fix_it():
    with pytest.raises(ConfigError, match="data.channels=3"):
        build(DataConfig(normalize="imagenet"))


def test_train_stats_are_cached_under_the_cache_dir(tmp_path):
    first = build(DataConfig(cache_dir=str(tmp_path))).info
    assert len(list((tmp_path / "stats").iterdir())) == 1
    assert build(DataConfig(cache_dir=str(tmp_path))).info == first


def test_coarse_labels_only_where_a_dataset_has_them():
    with pytest.raises(ConfigError, match="data.label_set = 'coarse': digits has one label set"):
        build(DataConfig(label_set="coarse"))
