"""build_pipeline: augment.train (a list of {op: NAME, **params}) -> one batch transform."""

import pytest
import torch

from cnnlab import augment
from cnnlab.augment.ops import crop, flip
from cnnlab.augment.policy import build_pipeline
from cnnlab.config.schema import AugmentConfig
from cnnlab.errors import ConfigError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_empty_list_gives_none():
    assert build_pipeline([], 3, (8, 8)) is None
    assert augment.build(AugmentConfig(), 3, (8, 8)) is None


def test_pipeline_applies_ops_in_order_with_their_params():
    specs = [{"op": "crop", "padding": 2}, {"op": "flip", "p": 1.0, "vertical": True}]
    pipe = build_pipeline(specs, 3, (8, 8))
    x = torch.rand(5, 3, 8, 8, generator=gen(9))
    # One generator drives the whole chain, so drawing from it in order reproduces the pipeline.
    g = gen(1)
    expected = flip(crop(x, g, padding=2), g, p=1.0, vertical=True)
    assert torch.equal(pipe(x, gen(1)), expected)


def test_pipeline_from_config():
    pipe = augment.build(AugmentConfig(train=[{"op": "flip", "p": 1.0}]), 1, (4, 4))
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(pipe(x, gen()), x.flip(-1))


def test_unknown_op_names_the_entry_and_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "flp"}], 3, (8, 8))
    msg = str(e.value)
    assert msg.startswith("augment.train[0]")
    assert "'flp'" in msg and "did you mean flip?" in msg
    assert "crop" in msg and "flip" in msg.split("valid:")[1]


def test_unknown_op_in_a_later_entry_names_that_index():
    with pytest.raises(ConfigError, match=r"augment\.train\[2\]"):
        build_pipeline([{"op": "flip"}, {"op": "crop"}, {"op": "rotate"}], 3, (8, 8))


def test_unknown_parameter_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "crop", "pading": 2}], 3, (8, 8))
    msg = str(e.value)
    assert "augment.train[0].pading" in msg and "crop" in msg
    assert "did you mean padding?" in msg
    for valid in ("padding", "mode", "p"):
        assert valid in msg.split("valid:")[1]
    # x and gen are supplied by the pipeline, not by users.
    assert "gen" not in msg.split("valid:")[1]


@pytest.mark.parametrize("p", [1.5, -0.5])
def test_p_out_of_range_is_a_config_error_naming_the_op_index(p):
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "crop", "padding": 1}, {"op": "flip", "p": p}], 3, (8, 8))
    msg = str(e.value)
    assert "augment.train[1] (flip)" in msg and repr(p) in msg


@pytest.mark.parametrize(
    "spec",
    [{"op": "crop", "mode": "wrap"}, {"op": "crop", "padding": -2}],
)
def test_bad_values_fail_when_built_not_mid_training(spec):
    with pytest.raises(ConfigError, match=r"augment\.train\[0\] \(" + spec["op"]):
        build_pipeline([spec], 3, (8, 8))


def test_padding_too_large_for_reflect_fails_at_build_time_for_this_image_size():
    with pytest.raises(ConfigError, match=r"augment\.train\[0\] \(crop\)"):
        build_pipeline([{"op": "crop", "padding": 8, "mode": "reflect"}], 1, (8, 8))
    assert build_pipeline([{"op": "crop", "padding": 8, "mode": "reflect"}], 1, (16, 16))


@pytest.mark.parametrize("spec", ["flip", ["flip"], None, 3, {"p": 0.5}])
def test_entry_that_is_not_a_mapping_with_op_is_a_config_error(spec):
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "flip"}, spec], 3, (8, 8))
    msg = str(e.value)
    assert msg.startswith("augment.train[1]") and "'op'" in msg


@pytest.mark.parametrize("name", [["flip"], None])
def test_op_name_that_is_not_a_string_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"augment\.train\[0\]"):
        build_pipeline([{"op": name}], 3, (8, 8))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"op": "flip", "vertical": "false"}, "expected bool"),
        ({"op": "flip", "p": "half"}, "expected float"),
        ({"op": "crop", "padding": 2.5}, "expected int"),
        ({"op": "crop", "padding": True}, "expected int"),
        ({"op": "crop", "mode": 3}, "expected str"),
    ],
)
def test_parameter_of_the_wrong_type_is_a_config_error(spec, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        build_pipeline([spec], 3, (8, 8))
    assert str(e.value).startswith("augment.train[0].")


def test_an_integer_may_stand_for_a_float_parameter():
    assert build_pipeline([{"op": "flip", "p": 1}], 3, (8, 8)) is not None
