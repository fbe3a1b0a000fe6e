"""build_pipeline: augment.train (a list of {op: NAME, **params}) -> one batch transform."""

import pytest
import torch

from cnnlab import augment
from cnnlab.augment.geometry import crop, flip
from cnnlab.augment.policy import build_pipeline
from cnnlab.config.schema import AugmentConfig
from cnnlab.errors import ConfigError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_empty_list_gives_none():
    assert build_pipeline([], 10, 3, (8, 8)) is None
    assert augment.build(AugmentConfig(), 10, 3, (8, 8)) is None


def test_pipeline_applies_ops_in_order_with_their_params():
    specs = [{"op": "crop", "padding": 2}, {"op": "flip", "p": 1.0, "vertical": True}]
    pipe = build_pipeline(specs, 10, 3, (8, 8))
    x = torch.rand(5, 3, 8, 8, generator=gen(9))
    # One generator drives the whole chain, so drawing from it in order reproduces the pipeline.
    g = gen(1)
    expected = flip(crop(x, g, padding=2), g, p=1.0, vertical=True)
    y = torch.arange(5)
    out, labels = pipe(x, y, gen(1))
    assert torch.equal(out, expected) and labels is y  # pixel ops leave the labels alone


def test_pipeline_from_config():
    pipe = augment.build(AugmentConfig(train=[{"op": "flip", "p": 1.0}]), 10, 1, (4, 4))
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(pipe(x, torch.arange(2), gen())[0], x.flip(-1))


def test_unknown_op_names_the_entry_and_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "flp"}], 10, 3, (8, 8))
    msg = str(e.value)
    assert msg.startswith("augment.train[0]")
    assert "'flp'" in msg and "did you mean flip?" in msg
    assert "crop" in msg and "flip" in msg.split("valid:")[1]


def test_unknown_op_in_a_later_entry_names_that_index():
    with pytest.raises(ConfigError, match=r"augment\.train\[2\]"):
        build_pipeline([{"op": "flip"}, {"op": "crop"}, {"op": "rotat"}], 10, 3, (8, 8))


def test_unknown_parameter_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "crop", "pading": 2}], 10, 3, (8, 8))
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
        build_pipeline([{"op": "crop", "padding": 1}, {"op": "flip", "p": p}], 10, 3, (8, 8))
    msg = str(e.value)
    assert "augment.train[1] (flip)" in msg and repr(p) in msg


@pytest.mark.parametrize(
    "spec",
    [{"op": "crop", "mode": "wrap"}, {"op": "crop", "padding": -2}],
)
def test_bad_values_fail_when_built_not_mid_training(spec):
    with pytest.raises(ConfigError, match=r"augment\.train\[0\] \(" + spec["op"]):
        build_pipeline([spec], 10, 3, (8, 8))


def test_padding_too_large_for_reflect_fails_at_build_time_for_this_image_size():
    with pytest.raises(ConfigError, match=r"augment\.train\[0\] \(crop\)"):
        build_pipeline([{"op": "crop", "padding": 8, "mode": "reflect"}], 10, 1, (8, 8))
    assert build_pipeline([{"op": "crop", "padding": 8, "mode": "reflect"}], 10, 1, (16, 16))


@pytest.mark.parametrize("spec", ["flip", ["flip"], None, 3, {"p": 0.5}])
def test_entry_that_is_not_a_mapping_with_op_is_a_config_error(spec):
    with pytest.raises(ConfigError) as e:
        build_pipeline([{"op": "flip"}, spec], 10, 3, (8, 8))
    msg = str(e.value)
    assert msg.startswith("augment.train[1]") and "'op'" in msg


@pytest.mark.parametrize("name", [["flip"], None])
def test_op_name_that_is_not_a_string_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"augment\.train\[0\]"):
        build_pipeline([{"op": name}], 10, 3, (8, 8))


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
        build_pipeline([spec], 10, 3, (8, 8))
    assert str(e.value).startswith("augment.train[0].")


def test_an_integer_may_stand_for_a_float_parameter():
    assert build_pipeline([{"op": "flip", "p": 1}], 10, 3, (8, 8)) is not None


def test_a_mixing_op_turns_labels_into_class_probabilities():
    pipe = build_pipeline([{"op": "flip"}, {"op": "mixup", "alpha": 1.0}], 4, 3, (8, 8))
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    out, soft = pipe(x, y, gen())
    assert soft.shape == (6, 4) and torch.allclose(soft.sum(1), torch.ones(6))


def test_random_subset_applies_exactly_n_ops_per_sample():
    # Three ops that each add a distinct power of two, so the sum says which ones ran.
    specs = [
        {
            "op": "random_subset",
            "n": 2,
            "ops": [
                {"op": "flip", "p": 1.0},
                {"op": "crop", "padding": 1, "p": 1.0},
                {"op": "flip", "p": 1.0, "vertical": True},
            ],
        }
    ]
    pipe = build_pipeline(specs, 10, 1, (5, 5))
    x = torch.arange(25.0).view(1, 1, 5, 5).expand(64, 1, 5, 5) / 25
    out, _ = pipe(x, torch.zeros(64, dtype=torch.long), gen(2))
    changed = (out != x).flatten(1).any(1)
    assert changed.all()  # two of the three always include a flip or a crop that moves pixels
    assert len({tuple(o.flatten().tolist()) for o in out}) > 3  # samples chose differently


def test_random_subset_magnitude_sets_the_strength():
    from cnnlab.augment.policy import _at_magnitude

    assert _at_magnitude("rotate", 10) == {"degrees": 30.0}
    assert _at_magnitude("rotate", 5) == {"degrees": 15.0}
    assert _at_magnitude("posterize", 10) == {"bits": 4}
    assert _at_magnitude("blur", 10)["kernel"] % 2 == 1


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"op": "random_subset", "ops": []}, "non-empty list"),
        ({"op": "random_subset", "n": 3, "ops": [{"op": "flip"}]}, "n = 3"),
        (
            {"op": "random_subset", "n": 1, "ops": [{"op": "flip"}], "magnitude": 11},
            "magnitude = 11",
        ),
        (
            {"op": "random_subset", "n": 1, "ops": [{"op": "flp"}]},
            r"ops\[0\]: unknown augmentation op",
        ),
        ({"op": "random_subset", "n": 1, "ops": [{"op": "mixup"}]}, "outside"),
        ({"op": "random_subset", "ops": [{"op": "flip"}], "size": 2}, "unknown parameter"),
    ],
)
def test_random_subset_errors_name_the_problem(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_pipeline([spec], 10, 3, (8, 8))
