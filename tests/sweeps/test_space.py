"""The search space: grids hold every combination exactly once, conditions leave keys out, and
sampled values go back into configs as the same values."""

from __future__ import annotations

import json
import math

import optuna
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.sweeps.space import (
    ChoiceParam,
    FloatParam,
    IntParam,
    config_values,
    grid_points,
    overrides,
    suggest,
)

values = st.one_of(
    st.integers(-5, 5),
    st.floats(1e-6, 10, allow_nan=False),
    st.sampled_from(["adam", "sgd", "3", "true", "1e-3"]),
    st.lists(st.fixed_dictionaries({"op": st.sampled_from(["flip", "crop"])}), max_size=2),
)
choices = st.lists(values, min_size=1, max_size=4, unique_by=lambda v: json.dumps(v))


@settings(max_examples=60, deadline=None)
@given(st.lists(choices, min_size=1, max_size=3))
def test_a_grid_is_every_combination_once(lists):
    space = {f"key{i}": ChoiceParam(choices=c) for i, c in enumerate(lists)}
    points = grid_points(space)
    assert len(points) == math.prod(len(c) for c in lists)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)


@settings(max_examples=40, deadline=None)
@given(choices, st.data())
def test_a_conditional_key_is_in_exactly_the_points_its_condition_allows(names, data):
    allowed = data.draw(st.lists(st.sampled_from(names), min_size=1, unique_by=json.dumps))
    space = {
        "optim.name": ChoiceParam(choices=names),
        "optim.momentum": ChoiceParam(choices=[0.5, 0.9], when={"optim.name": allowed}),
    }
    allowed = space["optim.momentum"].when["optim.name"]  # "1e-3" read as the number, as choices
    points = grid_points(space)
    for point in points:
        chosen = config_values(space, point)
        assert ("optim.momentum" in chosen) == (chosen["optim.name"] in allowed)
    assert len(points) == len(names) + len(allowed)  # no point repeated for an unused key


@settings(max_examples=80, deadline=None)
@given(values)
def test_overrides_read_back_as_the_same_value(value):
    (text,) = overrides({"a.b": value})
    assert yaml.safe_load(text.partition("=")[2]) == value


def test_ranges_expand_on_a_grid():
    assert IntParam(low=16, high=64, step=16).grid() == [16, 32, 48, 64]
    assert FloatParam(low=0.0, high=0.3, step=0.1).grid() == [0.0, 0.1, 0.2, 0.3]


def test_sampled_choices_that_are_lists_come_back_as_lists():
    policies = [[], [{"op": "flip"}], [{"op": "flip"}, {"op": "crop", "padding": 1}]]
    space = {
        "augment.train": ChoiceParam(choices=policies),
        "optim.lr": FloatParam(low=0.001, high=0.1, log=True),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        chosen = suggest(trial, space)
        study.tell(trial, 0.0)
        assert chosen["augment.train"] in policies
        assert 0.001 <= chosen["optim.lr"] <= 0.1
        seen.append(json.dumps(chosen["augment.train"]))
    assert len(set(seen)) == 3
