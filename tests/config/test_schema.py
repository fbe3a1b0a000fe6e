from cnnlab.config.load import validate
from cnnlab.config.schema import Config, valid_keys


def test_valid_keys_cover_every_section_and_nested_key():
    keys = valid_keys()
    for section in ("data", "augment", "model", "optim", "schedule", "train", "eval", "run"):
        assert section in keys
    assert "optim.lr" in keys
    assert "train.early_stopping.monitor" in keys


def test_to_dict_round_trips():
    cfg = Config()
    assert validate(cfg.to_dict()) == cfg


def test_val_split_accepts_fraction_or_count():
    assert validate({"data": {"val_split": 0.1}}).data.val_split == 0.1
    assert validate({"data": {"val_split": 200}}).data.val_split == 200


def test_run_dir_default_is_the_commands_default():
    from cnnlab.config.defaults import RUN_DIR

    assert Config().run.dir == RUN_DIR
