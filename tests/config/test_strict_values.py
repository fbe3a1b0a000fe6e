"""Values pydantic's lax mode would guess at are refused with the key named; numeric strings
from YAML stay numbers; every float is finite; sizes that decide memory have upper bounds."""

import pytest

from cnnlab.config import load_config
from cnnlab.config.schema import MAX_BATCH, MAX_IMAGE_SIZE, MAX_WIDTH, MIN_IMAGE_SIZE
from cnnlab.errors import ConfigError


def error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(overrides=list(overrides))
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize(
    "override, key, fragment",
    [
        ("optim.lr=true", "optim.lr", "not true/false"),  # would train at lr 1.0
        ("train.epochs=true", "train.epochs", "not true/false"),
        ("optim.betas=[true, 0.9]", "optim.betas.0", "not true/false"),
        ("data.channels=true", "data.channels", "not true/false"),  # Literal[1, 3] takes True
        ("data.val_split=false", "data.val_split", "not true/false"),
        ("optim.lr_mult={head: true}", "optim.lr_mult.head", "not true/false"),
        ("model.se=0", "model.se", "expected true or false"),
        ("model.bn=1", "model.bn", "expected true or false"),
        ("train.compile='yes'", "train.compile", "expected true or false"),
        ("transfer.freeze=[]", "transfer.freeze", "expected true or false"),
    ],
)
def test_bools_and_numbers_do_not_stand_in_for_each_other(override, key, fragment):
    message = error(override)
    assert message.startswith(f"{key} = ") and fragment in message
    assert f"(from override {override})" in message


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1.0e999", "'inf'", "'nan'"])
@pytest.mark.parametrize(
    "key",
    [
        "optim.lr",
        "optim.eps",
        "optim.weight_decay",
        "schedule.min_lr",
        "schedule.warmup_epochs",
        "train.grad_clip",
        "train.max_minutes",
        "train.spike_factor",
        "train.early_stopping.min_delta",
        "transfer.backbone_lr_mult",
        "data.max_resident_mb",
    ],
)
def test_every_float_must_be_finite(key, value):
    message = error(f"{key}={value}")
    assert message.startswith(f"{key} = ") and "finite" in message


def test_floats_inside_free_form_sections_must_be_finite_too():
    assert "finite" in error("augment.train=[{op: crop, padding: .inf}]")
    assert "finite" in error("optim.betas=[.nan, 0.9]")


def test_numeric_strings_still_read_as_numbers():
    cfg = load_config(overrides=["optim.lr=1e-3", "optim.eps='1e-8'", "train.epochs='3'"])
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.eps == pytest.approx(1e-8)
    assert cfg.train.epochs == 3
    assert load_config(overrides=["model.se=yes", "model.bn=off"]).model.se is True


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.seed=123456789012345678901234567890", "train.seed"),  # torch.manual_seed fails
        (f"train.seed={-(2**63) - 1}", "train.seed"),
        ("data.split_seed=-1", "data.split_seed"),  # scikit-learn's random_state fails
        (f"data.image_size={MAX_IMAGE_SIZE + 1}", "data.image_size"),
        ("data.image_size=100000", "data.image_size"),
        (f"data.image_size={MIN_IMAGE_SIZE - 1}", "data.image_size"),
        ("transfer.input_size=100000", "transfer.input_size"),
        (f"model.width={MAX_WIDTH + 1}", "model.width"),
        ("model.width=100000000", "model.width"),
        (f"train.batch_size={MAX_BATCH + 1}", "train.batch_size"),
        (f"eval.batch_size={MAX_BATCH + 1}", "eval.batch_size"),
        ("model.stages=[2, 2, 1000]", "model.stages.2"),
        ("model.stages=[1, 1, 1, 1, 1, 1, 1, 1, 1]", "model.stages"),
        ("model.widen=1000", "model.widen"),
        ("transfer.hidden=[100000000]", "transfer.hidden.0"),
        ("train.epochs=10000000000", "train.epochs"),
        ("schedule.warmup_epochs=1e300", "schedule.warmup_epochs"),
        ("data.num_workers=100000", "data.num_workers"),
    ],
)
def test_values_that_decide_memory_or_overflow_have_bounds(override, key):
    assert error(override).startswith(f"{key} = ")


@pytest.mark.parametrize("device", ["meta", "xla", "hpu", "cpu:7", "cuda:-1", "cuda:x", "CPU", ""])
def test_device_spellings_outside_the_five_forms_are_refused(device):
    message = error(f"train.device='{device}'")
    assert message.startswith("train.device = ") and "auto, cpu, cuda, cuda:N or mps" in message


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"])
def test_device_syntax_accepts_the_five_forms(device):
    # Whether the device exists is resolve_device's question, asked when a run starts.
    assert load_config(overrides=[f"train.device={device}"]).train.device == device


@pytest.mark.parametrize(
    "override, fragment",
    [
        ('data.root="a\\0b"', "NUL"),
        ("run.name=" + "x" * 300, "at most 200"),
        ("run.dir=" + "d" * 300, "path component of 300 bytes"),
        ("data.cache_dir=/tmp/" + "c" * 256, "path component"),
        ("schedule.monitor=" + "m" * 5000, "at most"),
    ],
)
def test_strings_are_text_the_os_can_take(override, fragment):
    assert fragment in error(override)


def test_defaults_and_the_shipped_recipes_still_validate():
    from cnnlab.config import recipe_names

    for name in recipe_names():
        load_config(overrides=[f"recipe={name}"])
