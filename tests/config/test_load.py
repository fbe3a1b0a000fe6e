from pathlib import Path

import pytest

from cnnlab.config import Config, dump_yaml, load_config
from cnnlab.config.load import parse_override
from cnnlab.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_no_arguments_gives_the_schema_defaults():
    assert load_config() == Config()


def test_files_layer_in_order_and_overrides_win(tmp_path):
    a = write(tmp_path / "a.yaml", "optim: {lr: 0.1, name: sgd}\ntrain: {epochs: 3}\n")
    b = write(tmp_path / "b.yaml", "optim: {lr: 0.2}\n")
    cfg = load_config([a, b], ["train.epochs=7"])
    assert cfg.optim.lr == 0.2  # later file wins
    assert cfg.optim.name == "sgd"  # mappings merge key by key
    assert cfg.train.epochs == 7  # override wins over files
    assert cfg.model == Config().model  # untouched sections keep defaults


def test_override_values_are_yaml():
    cfg = load_config(
        overrides=[
            "optim.lr=1e-3",  # PyYAML reads this as a string; the schema still takes it
            "optim.betas=[0.8, 0.9]",
            "train.grad_clip=null",
            "optim.nesterov=true",
            "augment.train=[{op: flip}, {op: crop, padding: 1}]",
        ]
    )
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.grad_clip is None
    assert cfg.optim.nesterov is True
    assert cfg.augment.train == [{"op": "flip"}, {"op": "crop", "padding": 1}]


def test_lists_replace_rather_than_merge(tmp_path):
    a = write(tmp_path / "a.yaml", "augment: {train: [{op: flip}, {op: crop}]}\n")
    cfg = load_config([a], ["augment.train=[{op: crop}]"])
    assert cfg.augment.train == [{"op": "crop"}]


def test_unknown_key_suggests_the_closest_valid_key():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["optim.lrr=0.1"])
    assert str(e.value).startswith("unknown key optim.lrr — did you mean optim.lr?")
    assert "override optim.lrr=0.1" in str(e.value)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    f = write(tmp_path / "my.yaml", "train:\n  early_stopping:\n    patiense: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config([f])
    message = str(e.value)
    assert "train.early_stopping.patiense" in message
    assert "did you mean train.early_stopping.patience?" in message
    assert str(f) in message


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("optim.lr=-1", "optim.lr", "greater than 0"),
        ("optim.lr=fast", "optim.lr", "valid number"),
        ("train.epochs=2.5", "train.epochs", "integer"),
        ("train.epochs=0", "train.epochs", "greater than or equal to 1"),
        ("data.val_split=1.5", "data.val_split", "(0, 1)"),
        ("data.val_split=0", "data.val_split", ">= 1"),
        ("optim.betas=[0.9, 1.5]", "optim.betas", "[0, 1)"),
        ("train.precision=fp8", "train.precision", "fp32"),
        ("model.activation=tanh", "model.activation", "relu"),
        ("optim=3", "optim", "dictionary"),
    ],
)
def test_bad_values_name_key_value_and_expectation(override, key, expected):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    message = str(e.value)
    assert message.startswith(f"{key} = ")
    assert override.split("=", 1)[1].split(",")[0].strip("[") in message  # the value is shown
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["optim.lr", "=3", "optim..lr=1", "optim.lr-x=2"])
def test_malformed_overrides_are_config_errors(text):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(text)


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"])
    bad = write(tmp_path / "bad.yaml", "optim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: not valid YAML"):
        load_config([bad])
    scalar = write(tmp_path / "scalar.yaml", "3\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config([scalar])


def test_empty_file_changes_nothing(tmp_path):
    assert load_config([write(tmp_path / "empty.yaml", "")]) == Config()


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown recipe 'defualt' — did you mean default"):
        load_config(overrides=["recipe=defualt"])


def test_dumped_yaml_loads_back_to_the_same_config(tmp_path):
    cfg = load_config(overrides=["optim.lr=0.05", "augment.train=[{op: flip, p: 0.3}]"])
    path = write(tmp_path / "resolved.yaml", dump_yaml(cfg))
    assert load_config([path]) == cfg


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception, match="frozen"):
        cfg.optim.lr = 1.0  # type: ignore[misc]
