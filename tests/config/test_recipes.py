import pytest

from cnnlab.config import load_config, recipe_names


def test_default_recipe_is_shipped():
    assert "default" in recipe_names()


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_validates(name):
    assert load_config(overrides=[f"recipe={name}"]).recipe == name


@pytest.mark.slow
@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_trains_an_epoch_on_digits(name, tmp_path):
    """A recipe is ordinary config: it must build and train on any small dataset, not only
    the one it was tuned on (here the 8x8 digits, where the nets shrink to fit; only a
    validation count sized for 60k images is set back to a fraction)."""
    from cnnlab.training.experiment import train

    config = load_config(
        overrides=[
            f"recipe={name}",
            "data.name=digits",
            "data.val_split=0.2",
            "train.epochs=1",
            f"run.dir={tmp_path}",
        ]
    )
    result = train(config)
    assert result.status == "completed" and result.summary["final_val_acc"] > 0.3
