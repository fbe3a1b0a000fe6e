"""load_dumped: the fast reader of configs as safe_dump writes them. Whatever it returns must be
what PyYAML's safe loader returns; where it cannot tell, None (the caller then uses PyYAML)."""

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.config import dump_yaml, load_config, recipe_names
from cnnlab.config.dumped_yaml import load_dumped


def same(ours, theirs) -> bool:
    """Equal, NaN equal to NaN, and each value of the same type (1 is not 1.0 or True)."""
    if isinstance(ours, float) and isinstance(theirs, float) and math.isnan(ours):
        return math.isnan(theirs)
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, dict):
        return list(ours) == list(theirs) and all(same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(map(same, ours, theirs))
    return ours == theirs


def agrees(text: str) -> object:
    """load_dumped(text), checked against yaml.safe_load(text)."""
    ours = load_dumped(text)
    if ours is not None:
        assert same(ours, yaml.safe_load(text)), text
    return ours


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_as_dumped_is_read_without_pyyaml(recipe):
    text = dump_yaml(load_config(overrides=[f"recipe={recipe}"]))
    assert agrees(text) is not None


@pytest.mark.parametrize(
    "overrides",
    [
        ["augment.train=[{op: flip}, {op: crop, padding: 4}]", "augment.tta=[{op: flip}]"],
        ["recipe=cpu-fast", "optim.lr_mult={backbone: 0.1}", "run.name=it's a #test"],
        ["data.root=/tmp/x y", "run.name='1e-3'", "data.classes=[cat, 'yes', '3']"],
    ],
)
def test_configs_with_augmentations_layers_and_odd_strings_are_read_without_pyyaml(overrides):
    assert agrees(dump_yaml(load_config(overrides=overrides))) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 1.5\nc: -0.0\nd: 1.0e-05\n", {"a": 1, "b": 1.5, "c": -0.0, "d": 1e-05}),
        ("a: 1e-3\nb: 09\nc: '3'\n", {"a": "1e-3", "b": "09", "c": "3"}),  # YAML 1.1: strings
        (
            "a: yes\nb: Off\nc: ~\nd: null\ne:\n",
            {"a": True, "b": False, "c": None, "d": None, "e": None},
        ),
        ("a: 'it''s'\nb: x:y\nc: a#b\nd: ---\n", {"a": "it's", "b": "x:y", "c": "a#b", "d": "---"}),
        ("a:\n- 1\n- x\nb: []\nc: {}\n", {"a": [1, "x"], "b": [], "c": {}}),
        ("a:\n  b:\n    c: 1\n  d:\n  - 2\ne: 3\n", {"a": {"b": {"c": 1}, "d": [2]}, "e": 3}),
        ("a:\n  - 1\n  - 2\n", {"a": [1, 2]}),
        (
            "a:\n- op: crop\n  size:\n  - 1\n- op: flip\nb: 1\n",
            {"a": [{"op": "crop", "size": [1]}, {"op": "flip"}], "b": 1},
        ),
        ("a: 1\na: 2\n", {"a": 2}),
    ],
)
def test_what_it_reads(text, expected):
    assert same(agrees(text), expected)


@pytest.mark.parametrize(
    "text",
    [
        "yes: 1\n",  # a bool key
        "1: a\n",  # an int key
        "a: 0x1F\nb: 1_000\n",  # ints PyYAML spells its own way
        "a: .inf\n",
        "a: 2026-01-01\n",  # a date
        "a: b: c\n",  # an error in YAML
        "a: [1, 2]\n",  # a flow list
        'a: "x\\ty"\n',  # double quotes, escapes
        "a: &x 1\nb: *x\n",  # anchor and alias
        "a: !!str 1\n",
        "a: 1 # note\n",
        "a: long\n  text\n",  # a multi-line scalar
        "a:\n- - 1\n",  # nested lists
        "a:\tb\n",
        "\ufeffa: 1\n",
        "a: 1\n\nb: 2\n",
        "<<: {a: 1}\n",
        "- 1\n- 2\n",  # not a mapping
        "",
        "a: 'x\n",
        "".join(" " * i + "a:\n" for i in range(3000)),  # deeper than Python recurses
    ],
    ids=lambda text: repr(text[:20]),
)
def test_what_it_leaves_to_pyyaml(text):
    assert load_dumped(text) is None


keys = st.text(st.sampled_from("abcyesnoONtrufl_-.:#' 0123456789~"), min_size=1, max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["yes", "No", "~", "null", "1e-3", "0x1F", "1_000", "2026-01-01", "-", "'"]),
)
values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda inner: st.dictionaries(keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=6))
def test_anything_safe_dump_writes_reads_as_pyyaml_reads_it(config):
    agrees(yaml.safe_dump(config, sort_keys=False))


@settings(max_examples=400, deadline=None)
@given(st.text(st.sampled_from("ab01.-: '#\n[]{}~&*!yes\t"), max_size=40))
def test_any_text_reads_as_pyyaml_reads_it_or_is_left_to_it(text):
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        assert load_dumped(text) is None, text
        return
    agrees(text)
