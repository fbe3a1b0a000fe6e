"""models.build passes each model the options it names, and refuses a changed option it would
ignore, while a fully resolved config (every key listed) still builds."""

import pytest

from cnnlab import models
from cnnlab.config.load import validate
from cnnlab.config.schema import Config, ModelConfig
from cnnlab.errors import ConfigError


@pytest.mark.parametrize("name", ["cnn", "mlp", "vgg", "fastnet"])
def test_a_resolved_config_listing_every_option_builds(name):
    resolved = validate(Config(model=ModelConfig(name=name, width=8)).to_dict())
    assert resolved.model.model_fields_set >= {"se", "depth", "stem"}  # every key was given
    assert models.create(resolved.model, 10, 1, (8, 8)) is not None


def test_a_changed_option_the_model_ignores_is_an_error():
    with pytest.raises(ConfigError, match=r"model.stem is not an option of model 'vgg'"):
        models.create(ModelConfig(name="vgg", stem="imagenet"), 10, 3, (32, 32))


def test_an_option_the_model_takes_reaches_it():
    plain = models.create(ModelConfig(name="cnn", width=8), 10, 3, (16, 16))
    with_se = models.create(ModelConfig(name="cnn", width=8, se=True), 10, 3, (16, 16))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_se) > count(plain)


def test_mlp_matches_the_same_net_written_by_hand():
    from torch import nn

    built = models.create(ModelConfig(name="mlp", width=8), 10, 1, (28, 28))
    by_hand = nn.Sequential(
        nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Dropout(0.0), nn.Linear(64, 10)
    )
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(built) == count(by_hand) == 28 * 28 * 64 + 64 + 64 * 10 + 10
