import pytest

from cnnlab.config.schema import EarlyStoppingConfig
from cnnlab.training.loop import FitState


def feed(values, **rule):
    state, marks = FitState(), []
    for epoch, value in enumerate(values, start=1):
        state.epoch = epoch
        marks.append(state.improve(value, EarlyStoppingConfig(**rule)))
    return state, marks


def test_max_mode_tracks_best_epoch_and_patience():
    state, marks = feed([0.5, 0.7, 0.6, 0.65], mode="max")
    assert marks == [True, True, False, False]
    assert (state.best, state.best_epoch, state.bad_epochs) == (0.7, 2, 2)


def test_min_mode_and_min_delta():
    state, marks = feed([1.0, 0.95, 0.5], mode="min", min_delta=0.1)
    assert marks == [True, False, True]  # 0.95 is not 0.1 better than 1.0
    assert state.best == pytest.approx(0.5)
