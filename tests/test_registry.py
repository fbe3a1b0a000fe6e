import pytest

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry


def test_register_and_get():
    things = Registry("thing", "thing.name")
    things.register("a")(1)
    assert things.get("a") == 1 and "a" in things and things.names() == ["a"]


def test_duplicate_names_are_refused():
    things = Registry("thing", "thing.name")
    things.register("a")(1)
    with pytest.raises(RuntimeError, match="registered twice"):
        things.register("a")(2)


def test_unknown_name_is_a_config_error_listing_valid_names():
    things = Registry("thing", "thing.name")
    for name in ("alpha", "beta"):
        things.register(name)(name)
    with pytest.raises(ConfigError) as e:
        things.get("alpah")
    assert str(e.value) == (
        "thing.name: unknown thing 'alpah' — did you mean alpha? (valid: alpha, beta)"
    )
