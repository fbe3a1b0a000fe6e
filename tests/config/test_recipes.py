import pytest

from cnnlab.config import load_config, recipe_names


def test_default_recipe_is_shipped():
    assert "default" in recipe_names()


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_validates(name):
    assert load_config(overrides=[f"recipe={name}"]).recipe == name
